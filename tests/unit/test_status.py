"""`barehub status` says which fragments the hub serves, and fails while they are the known-good ones; it says an
upgrade that runs, and one that was interrupted with the command that ends it."""
import os

from barehub.commands.status import format_status, hub_config_state, server_units
from barehub.hub_run import Run
from tests.unit.conftest import RecordingSystemctl


def run(config, failed=None):
    return Run(pid=1, started=0.0, config=config, digest="d", base_url="/jupyter/", failed=failed)


def test_the_current_fragments_are_no_problem():
    state = hub_config_state(run("current"))
    assert state["config"] == "current" and state["base_url"] == "/jupyter/" and "failed" not in state


def test_a_hub_back_on_the_known_good_fragments_is_a_problem_with_the_reason():
    assert hub_config_state(run("known-good", {"error": "50-bad.py:1: boom"}))["failed"] == "50-bad.py:1: boom"
    # sent back by a reload because it never became healthy: no error of its own, still a problem
    assert "did not answer /hub/health" in hub_config_state(run("known-good"))["failed"]


# systemd's units: a slice with a user's default and named server in it, and a unit of the host's
SLICE = {"jupyter-root-singleuser.service": {"Slice": "jupyterhub-users.slice", "User": "0", "ActiveState": "active",
                                             "MemoryCurrent": str(150 * 2**20), "MemoryMax": "infinity"},
         "jupyter-root-gpu.service": {"Slice": "jupyterhub-users.slice", "User": "0", "ActiveState": "active",
                                      "MemoryCurrent": str(2**30), "MemoryMax": str(2**31)},
         "jupyter-notebook-legacy.service": {"Slice": "system.slice", "User": "0", "ActiveState": "active",
                                             "MemoryCurrent": "1", "MemoryMax": "infinity"},
         "jupyterhub.service": {"Slice": "system.slice", "User": "", "ActiveState": "active"}}


def test_status_lists_each_server_unit_with_its_user_and_memory():
    systemctl = RecordingSystemctl(SLICE)
    units = server_units(systemctl)
    assert systemctl.calls == [("list-units", "--plain", "--no-legend", "jupyter-*.service")]
    assert units == [{"unit": "jupyter-root-gpu.service", "user": "root", "state": "active",
                      "memory": "1.0 GiB", "memory_max": "2.0 GiB"},
                     {"unit": "jupyter-root-singleuser.service", "user": "root", "state": "active",
                      "memory": "150.0 MiB", "memory_max": "no limit"}]
    status = {"release": "r", "prefix": "/p", "url": "u", "config_dir": {"path": "c", "state": "s"}, "units": {},
              "versions": {}, "certificate": {"https": False}, "hub": {"config": "current"},
              "running_servers": ["root"], "server_units": units}
    assert "jupyter-root-singleuser.service          user root, active, memory 150.0 MiB (limit: no limit)" \
        in format_status(status)


def test_memory_figures_read_as_people_read_them():
    from barehub.commands.status import human_bytes

    assert [human_bytes(v) for v in ("infinity", str(2**64 - 1), "512", str(3 * 2**30), "[not set]", None)] == \
        ["no limit", "no limit", "512 B", "3.0 GiB", "[not set]", "unknown"]


def test_a_service_token_that_is_a_link_is_refused_and_said_so(prefix, tmp_path):
    from barehub.commands.status import running_servers
    token = prefix.barehub_api_token
    token.unlink(missing_ok=True)
    token.symlink_to(tmp_path / "elsewhere")
    assert running_servers(prefix, 1, "/").startswith(f"no service token: {token} is a symbolic link")


def test_fragments_on_disk_the_check_refused_are_a_problem_named_by_file_and_line(prefix):
    """After a reload the check refused, the running hub is fine and the journal scrolls on: status says why
    the files on disk are not applied, until a check passes or they change."""
    from barehub.commands.status import fragment_check_state, healthy
    from barehub.fragment_check import read_refusal, record_refusal
    from barehub.config_loading import fragments_digest, read_set
    from barehub.validation import Problem

    bad = prefix.config_d / "50-bad.py"
    bad.write_text("c.Spawner.start_timeout = soon\n")
    problem = Problem(bad, 1, "NameError: name 'soon' is not defined")
    record_refusal(prefix, fragments_digest(read_set(prefix.config_d)), [problem])
    status = {"release": "r", "prefix": "/p", "url": "u", "config_dir": {"path": "c", "state": "s"},
              "units": {"jupyterhub.service": {"active": True, "enabled": True}}, "versions": {},
              "certificate": {"https": False}, "hub": {"config": "current"}, "running_servers": [], "server_units": [],
              "fragment_check": fragment_check_state(read_refusal(prefix))}
    shown = format_status(status)
    assert "PROBLEM: the fragments on disk failed the check at " in shown and "(check again: barehub check)" in shown
    assert f"\n    {bad}:1: NameError: name 'soon' is not defined" in shown
    assert status["fragment_check"]["problems"][0]["file"] == str(bad) and not healthy(status)

    bad.write_text("c.Spawner.start_timeout = 120\n")  # fixed, not checked yet: no longer known to fail
    status["fragment_check"] = fragment_check_state(read_refusal(prefix))
    shown = format_status(status)
    assert "PROBLEM" not in shown and "changed since the check refused them" in shown and healthy(status)

    prefix.fragment_check_file.unlink()  # a check passed
    status["fragment_check"] = fragment_check_state(read_refusal(prefix))
    assert "refused" not in format_status(status) and "PROBLEM" not in format_status(status) and healthy(status)


def upgrade_status(prefix, state) -> dict:
    return {"release": "2026.10.0", "prefix": str(prefix.prefix), "url": "u", "config_dir": {"path": "c", "state": "s"},
            "units": {"jupyterhub.service": {"active": True, "enabled": True}}, "versions": {},
            "certificate": {"https": False}, "hub": {"config": "current"}, "running_servers": [], "server_units": [],
            "upgrade": state}


def systemd_with(*active: str) -> RecordingSystemctl:
    systemctl = RecordingSystemctl()
    systemctl.is_active = lambda unit: unit in active
    return systemctl


def test_an_interrupted_upgrade_is_a_problem_naming_its_state_and_the_command_that_ends_it(prefix):
    """records/upgrade.json and no upgrade running: an upgrade was killed midway (its unit, a reboot). Status
    says from and to, the backup, whether the hub runs, where the env link points, and the one command."""
    from barehub.commands.status import healthy, upgrade_state

    prefix.upgrade_file.write_text('{"from": "2026.10.0", "to": "2026.12.0", "backup": "20261206T190000Z-from-2026.10.0"}')
    (prefix.backups / "20261206T190000Z-from-2026.10.0").mkdir(parents=True)
    prefix.envs.mkdir()
    prefix.env.symlink_to("envs/2026.12.0")
    state = upgrade_state(prefix, systemd_with())
    assert state == {"from": "2026.10.0", "to": "2026.12.0", "backup": "20261206T190000Z-from-2026.10.0",
                     "running": False, "hub_running": False, "env_release": "2026.12.0",
                     "end": "barehub rollback --backup 20261206T190000Z-from-2026.10.0"}
    shown = format_status(upgrade_status(prefix, state))
    assert (f"PROBLEM: the upgrade 2026.10.0 -> 2026.12.0 was interrupted, its backup 20261206T190000Z-from-2026.10.0: "
            f"the hub is NOT running, {prefix.prefix}/conda links to release 2026.12.0's env") in shown
    assert "\n    end it: barehub rollback --backup 20261206T190000Z-from-2026.10.0\n" in shown
    assert not healthy(upgrade_status(prefix, state))
    # with the hub running (killed before it stopped the old one), still the same way out
    assert "the hub runs," in format_status(upgrade_status(prefix, upgrade_state(prefix, systemd_with("jupyterhub.service"))))


def test_an_upgrade_that_runs_is_said_with_how_to_follow_it_and_fails_nothing(prefix):
    from barehub.base.install_lock import InstallLock
    from barehub.commands.status import healthy, upgrade_state

    assert upgrade_state(prefix, systemd_with()) is None  # no record, nothing running: nothing to say
    state = upgrade_state(prefix, systemd_with(prefix.upgrade_unit))  # building the new env: no record yet
    assert state["running"] and state["by"] == f"unit {prefix.upgrade_unit}"
    shown = format_status(upgrade_status(prefix, state))
    assert f"upgrade: ? -> a new release is running (unit {prefix.upgrade_unit}); follow it: journalctl -fu " \
           f"{prefix.upgrade_unit}" in shown
    assert healthy(upgrade_status(prefix, state))
    # an upgrade run outside a unit (an older release's bootstrap.py) holds the install lock
    prefix.upgrade_file.write_text('{"from": "2026.10.0", "to": "2026.12.0", "backup": "b"}')
    lock = InstallLock(prefix).acquire()
    try:
        state = upgrade_state(prefix, systemd_with())
    finally:
        lock.release()
    assert state["running"] and state["by"].startswith(f"pid {os.getpid()}: ")
    assert upgrade_state(prefix, systemd_with())["running"] is False  # the lock went with its holder


def test_status_says_where_the_database_is_and_never_a_password(prefix):
    from barehub.commands.status import database_state
    from barehub.settings import Settings

    base = upgrade_status(prefix, None)
    sqlite = format_status({**base, "database": database_state(prefix, Settings())})
    assert f"database: SQLite, {prefix.db_file}" in sqlite
    pg = database_state(prefix, Settings(db_url="postgresql://hub@db.example.org/jupyterhub",
                                         db_password_file="/etc/barehub/db-password"))
    shown = format_status({**base, "database": pg})
    assert "database: PostgreSQL, postgresql://hub@db.example.org/jupyterhub (password from /etc/barehub/db-password)" \
        in shown
