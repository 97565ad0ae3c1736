"""A login never runs a server as root, a barehub service user or a system account (barehub.unix_accounts)."""
import pwd
from types import SimpleNamespace

import pytest

from barehub import unix_accounts
from barehub.validation import load_config


def fake_passwd(monkeypatch, accounts: dict[str, int]):
    real = pwd.getpwnam

    def getpwnam(name):
        if name in accounts:
            return SimpleNamespace(pw_name=name, pw_uid=accounts[name], pw_gid=accounts[name], pw_dir=f"/home/{name}")
        return real(name)

    monkeypatch.setattr(unix_accounts.pwd, "getpwnam", getpwnam)


def spawner_of(name: str, cls=None):
    """A spawner as JupyterHub hands it to pre_spawn_hook (only what the hook reads)."""
    obj = (cls or SimpleNamespace)()
    obj.user = SimpleNamespace(name=name, id=7)
    return obj


def hub_hook(paths, kind: str = "Spawner"):
    """What JupyterHub runs before Spawner.start, with the hub's config loaded: Spawner.run_pre_spawn_hook, on a
    spawner whose pre_spawn_hook is the one the config gives spawners of `kind`."""
    from jupyterhub.spawner import Spawner

    c = load_config(paths)
    hook = c[kind].get("pre_spawn_hook") if kind in c else None

    def run(spawner):
        spawner.pre_spawn_hook = hook
        return Spawner.run_pre_spawn_hook(spawner)

    return run


@pytest.mark.parametrize("name", ["root", "daemon", "nobody", "barehub-proxy", "jhub", "no-such-account-here"])
def test_system_and_service_accounts_are_refused_before_any_spawner_starts(prefix, monkeypatch, name):
    fake_passwd(monkeypatch, {"barehub-proxy": 995, "jhub": 1500})  # a --hub-user made with plain useradd
    prefix.settings_file.write_text('{"hub_user": "jhub"}')
    with pytest.raises(unix_accounts.SystemAccountRefused, match="not a person's account"):
        hub_hook(prefix)(spawner_of(name))


def test_a_person_in_the_login_defs_range_gets_her_server(prefix, monkeypatch):
    fake_passwd(monkeypatch, {"alice": 1001})
    assert hub_hook(prefix)(spawner_of("alice")) is None


def test_the_range_comes_from_login_defs(tmp_path):
    defs = tmp_path / "login.defs"
    defs.write_text("# comment\nUID_MIN\t\t 2000\nUID_MAX   3000\nSYS_UID_MIN 100\n")
    assert unix_accounts.login_defs_range(defs) == (2000, 3000)
    assert unix_accounts.login_defs_range(tmp_path / "missing") == (1000, 60000)


def test_a_site_sets_its_own_range_for_directory_uids(prefix, monkeypatch):
    fake_passwd(monkeypatch, {"carol": 1234567})
    with pytest.raises(unix_accounts.SystemAccountRefused, match="1234567"):
        hub_hook(prefix)(spawner_of("carol"))
    (prefix.config_d / "10-uids.py").write_text("c.Barehub.uid_max = 2**31 - 1\n")
    assert hub_hook(prefix)(spawner_of("carol")) is None


def test_a_fragments_own_hook_still_runs_after_the_check_and_cannot_replace_it(prefix, monkeypatch):
    fake_passwd(monkeypatch, {"alice": 1001})
    (prefix.config_d / "50-hook.py").write_text(
        "def mine(spawner):\n    spawner.ran = True\n"
        "c.SystemdSpawner.pre_spawn_hook = mine\nc.Spawner.pre_spawn_hook = None\n")
    for section in ("SystemdSpawner", "Spawner"):
        with pytest.raises(unix_accounts.SystemAccountRefused):
            hub_hook(prefix, section)(spawner_of("daemon"))
    alice = spawner_of("alice")
    hub_hook(prefix, "SystemdSpawner")(alice)
    assert alice.ran is True


def test_a_spawner_class_that_sets_its_own_hook_in_code_is_checked_too(prefix, monkeypatch):
    """Not only config: a subclass that sets pre_spawn_hook itself (a trait default, or in __init__)."""
    from jupyterhub.spawner import LocalProcessSpawner

    class Mine(LocalProcessSpawner):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.pre_spawn_hook = lambda spawner: None

    load_config(prefix)
    spawner = Mine(user=SimpleNamespace(name="daemon", id=7, url="/user/daemon/"), _deprecated_db_session=None)
    with pytest.raises(unix_accounts.SystemAccountRefused, match="'daemon' has uid 1"):
        spawner.run_pre_spawn_hook()


@pytest.mark.parametrize("name, uid, why", [("nobody", 65534, "nobody"), ("svc", 61200, "dynamic service users"),
                                            ("ovf", 4294967294, "nobody")])
def test_the_overflow_account_and_systemds_dynamic_users_are_refused_whatever_the_range(prefix, monkeypatch,
                                                                                       name, uid, why):
    fake_passwd(monkeypatch, {name: uid})
    (prefix.config_d / "10-uids.py").write_text("c.Barehub.uid_max = 2**32 - 1\n")
    with pytest.raises(unix_accounts.SystemAccountRefused, match=why):
        hub_hook(prefix)(spawner_of(name))


def test_systemd_dynamic_users_and_host_account_containers(prefix, monkeypatch):
    load_config(prefix)
    dynamic = spawner_of("no-such-account-here")
    dynamic.dynamic_users = True  # SystemdSpawner's DynamicUser=: a fresh uid, never an existing account
    unix_accounts.refuse_system_account(dynamic)

    class SystemUserSpawner:  # dockerspawner's: the container runs as the login's host uid, with its home
        pass

    SystemUserSpawner.__module__ = "dockerspawner.systemuserspawner"
    with pytest.raises(unix_accounts.SystemAccountRefused):
        unix_accounts.refuse_system_account(spawner_of("daemon", SystemUserSpawner))


def test_systemd_spawner_checks_the_account_its_username_template_maps_to(prefix, monkeypatch):
    from systemdspawner import SystemdSpawner

    fake_passwd(monkeypatch, {"alice": 1001})
    spawner = SystemdSpawner(user=SimpleNamespace(name="alice", id=7, url="/user/alice/"), _deprecated_db_session=None)
    spawner.username_template = "root"  # a site mapping logins onto accounts: the mapped one is checked
    with pytest.raises(unix_accounts.SystemAccountRefused, match="'root'"):
        hub_hook(prefix)(spawner)


def test_pods_do_not_run_as_unix_accounts(prefix):
    from kubespawner import KubeSpawner

    class Pod(KubeSpawner):
        def __init__(self):  # only the class matters to the check
            pass

    assert hub_hook(prefix)(spawner_of("root", Pod)) is None
