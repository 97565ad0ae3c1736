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
    c = load_config(paths)
    return c[kind].pre_spawn_hook if kind in c and "pre_spawn_hook" in c[kind] else c.Spawner.pre_spawn_hook


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
