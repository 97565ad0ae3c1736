"""An upgrade as a transaction: one backup per upgrade, refused before anything changes, rolled back
with the backup's database. (The whole path, with real releases, is in tests/integration/test_upgrade.py.)"""
import dataclasses
import sqlite3
import subprocess
from collections import namedtuple

import pytest

from barehub import __version__, release_change, releases
from barehub.base.errors import BarehubError
from barehub.base.paths import Paths
from barehub.base.records import read_json_dict
from tests.unit.conftest import RecordingSystemctl
from tests.unit.test_releases import names as users

OLD = releases.Release("2026.10.0", "envs/2026.10.0")


@pytest.fixture
def install(prefix):
    db = sqlite3.connect(prefix.db_file)
    db.execute("create table users (name text)")
    db.execute("insert into users values ('alice')")
    db.commit()
    db.close()
    releases.write_release(prefix, OLD)
    for release in ("2026.10.0", __version__):
        (prefix.envs / release / "bin").mkdir(parents=True, exist_ok=True)
    return prefix


def test_two_backups_in_the_same_second_do_not_collide_and_stay_in_order(install, monkeypatch):
    monkeypatch.setattr(releases.time, "strftime", lambda *a: "20261101T000000Z")
    first, second, third = (releases.backup(install, OLD) for _ in range(3))
    assert len({first, second, third}) == 3
    assert releases.list_backups(install) == [first, second, third]


def test_a_rerun_of_an_interrupted_upgrade_reuses_its_backup_of_the_pre_upgrade_database(install):
    upgrade = release_change.begin(install, OLD)
    assert read_json_dict(install.upgrade_file) == {"from": OLD.version, "to": __version__,
                                                    "backup": upgrade.backup.name}
    db = sqlite3.connect(install.db_file)
    db.execute("insert into users values ('half-migrated')")
    db.commit()
    db.close()
    again = release_change.begin(install, OLD)  # the same upgrade, run again after an interruption
    assert again.backup == upgrade.backup and releases.list_backups(install) == [upgrade.backup]
    assert users(upgrade.backup / "jupyterhub.sqlite") == ["alice"]
    release_change.finish(install)
    assert release_change.begin(install, OLD).backup != upgrade.backup  # a later upgrade has its own


def test_no_room_for_the_backup_refuses_before_anything_changes(install, monkeypatch):
    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(release_change.shutil, "disk_usage", lambda path: Usage(10**9, 10**9, 2**20))
    with pytest.raises(BarehubError, match="not enough space .* for the backup"):
        release_change.check_backup_space(install)
    assert releases.list_backups(install) == []


def test_a_failed_upgrade_rolls_back_to_the_old_env_database_and_records(install, monkeypatch):
    upgrade = release_change.begin(install, OLD)
    install.env.symlink_to(f"envs/{__version__}")  # the transaction had switched
    releases.write_release(install, releases.Release(__version__, f"envs/{__version__}"))
    db = sqlite3.connect(install.db_file)
    db.execute("insert into users values ('migrated')")
    db.commit()
    db.close()
    systemctl = RecordingSystemctl()
    # the old release's installer starts its hub: recorded among the systemctl calls, to see their order
    monkeypatch.setattr(release_change, "converge_with_installer_of",
                        lambda paths, release, lock: systemctl.calls.append(("installer of", release.version)))
    error = release_change.roll_back(install, upgrade, systemctl, lock=None,
                                     error=BarehubError("the database migration failed"))
    assert "rolled back: release 2026.10.0 serves again, with its database" in error.message
    assert "the database migration failed" in error.message
    # release 2026.10.0's env here has no jupyterhub-systemdspawner: its hub could not see server units; the
    # start limit is reset before the old installer starts the hub (the new hub's starts and restarts count)
    assert systemctl.calls == [("stop", "jupyterhub.service"), ("stop", "jupyterhub-users.slice"),
                               ("reset-failed", "jupyterhub.service"), ("installer of", "2026.10.0")]
    assert users(install.db_file) == ["alice"]
    assert releases.read_release(install, install.release_file) == OLD
    assert install.env.resolve() == (install.envs / "2026.10.0").resolve()
    assert not install.upgrade_file.exists()


def test_a_rollback_that_fails_too_says_how_to_finish_it(install, monkeypatch):
    upgrade = release_change.begin(install, OLD)

    def broken(paths, release, lock):
        raise BarehubError("the installer of release 2026.10.0 exited 1")
    monkeypatch.setattr(release_change, "converge_with_installer_of", broken)
    error = release_change.roll_back(install, upgrade, RecordingSystemctl(), None, RuntimeError("boom"))
    assert "and so did rolling back" in error.message and upgrade.backup.name in error.hint


def test_rollback_after_two_upgrades_takes_the_backup_of_the_last_one(install, monkeypatch):
    from barehub.commands.rollback import choose_backup

    stamps = iter(["20261101T000000Z", "20261201T000000Z"])
    monkeypatch.setattr(releases.time, "strftime", lambda *a: next(stamps))
    first = releases.backup(install, OLD)  # 2026.10.0 -> 2026.10.1
    releases.write_release(install, releases.Release("2026.10.1", "envs/2026.10.1"))  # the first one done
    second = releases.backup(install, releases.Release("2026.10.1", "envs/2026.10.1"))  # -> 2026.10.2
    assert choose_backup(install, None) == second
    assert releases.backup_release(install, second).version == "2026.10.1"
    assert choose_backup(install, first.name) == first
    with pytest.raises(BarehubError, match="no backup nope"):
        choose_backup(install, "nope")


def test_rollback_without_any_backup_says_when_backups_are_taken(prefix):
    from barehub.commands.rollback import choose_backup

    with pytest.raises(BarehubError, match="no backups in") as e:
        choose_backup(prefix, None)
    assert "backups are taken when an upgrade changes the release" in e.value.hint


def test_an_upgrade_on_a_systemd_too_old_for_server_units_changes_nothing(install):
    """An old release's bootstrap.py (which `barehub upgrade` runs) did not check the version: the new
    release's preflight does, before anything changes."""
    old_systemd = RecordingSystemctl(answers={"--version": "systemd 239 (239-78.el8)\n"})
    with pytest.raises(BarehubError, match="systemd 239 is too old"):
        release_change.preflight(install, OLD, old_systemd)
    assert releases.read_release(install, install.release_file) == OLD
    assert not install.upgrade_file.exists() and not install.backups.exists()


def test_going_back_to_a_release_with_server_units_leaves_them_running(install):
    systemctl = RecordingSystemctl()
    assert release_change.stop_servers_unknown_to(install, OLD, systemctl) is True
    assert systemctl.calls == [("stop", "jupyterhub-users.slice")]
    (install.envs / "2026.10.0" / "lib" / "python3.11" / "site-packages" / "systemdspawner").mkdir(parents=True)
    systemctl.calls.clear()
    assert release_change.stop_servers_unknown_to(install, OLD, systemctl) is False
    assert systemctl.calls == []


def test_routes_go_back_to_rules_toml_only_for_a_release_without_the_route_table(tmp_path):
    import json
    import tomllib

    paths = Paths.from_prefix(tmp_path)
    paths.traefik_routes_dir.mkdir(parents=True)
    paths.state.mkdir()
    paths.traefik_rules.write_text('{"http":{"routers":{"r":{"rule":"PathPrefix(`/user/a/`)","service":"s"}}}}')
    paths.proxy_routes.write_text(json.dumps({"routes": {"r": {"routespec": "/user/a/", "target": "http://x:1",
                                                                "data": {"user": "a"}}}}))
    new_env = tmp_path / "envs" / "new" / "lib" / "python3.11" / "site-packages" / "barehub"
    new_env.mkdir(parents=True)
    (new_env / "route_table.py").write_text("")
    assert not release_change.give_routes_back_to(paths, releases.Release("2026.12.0", "envs/new"))
    assert paths.traefik_rules.exists() and not paths.traefik_legacy_rules.exists()

    assert release_change.give_routes_back_to(paths, releases.Release("2026.10.0", "envs/old"))
    legacy = tomllib.loads(paths.traefik_legacy_rules.read_text())
    assert legacy["http"]["routers"]["r"]["rule"] == "PathPrefix(`/user/a/`)"
    assert legacy["jupyterhub"]["routes"]["r"]["target"] == "http://x:1"
    assert not paths.traefik_rules.exists() and not paths.proxy_routes.exists()
    assert paths.traefik_legacy_rules.stat().st_mode & 0o777 == 0o640


def test_an_upgrade_stops_the_old_hub_only_once_the_new_files_are_written_and_checked(prefix, monkeypatch):
    """Everything that can be done while the old hub serves is done first: /hub waits only through the stop,
    the migration and the new hub's start (before, it waited through writing and checking too)."""
    from barehub.commands import install

    steps = []
    monkeypatch.setattr(install, "write_files", lambda *a: steps.append("write files") or {"jupyterhub.service": "d"})
    monkeypatch.setattr(install, "units_to_restart", lambda paths, desired: ["jupyterhub.service"])
    monkeypatch.setattr(install, "refuse_broken_fragments", lambda *a: steps.append("check fragments"))
    monkeypatch.setattr(install, "start_units", lambda *a: steps.append("start hub") or 1.0)
    monkeypatch.setattr(install, "wait_for_hub", lambda *a: steps.append("wait for hub"))
    monkeypatch.setattr(install.releases, "write_release", lambda *a: steps.append("record release"))
    install.converge(prefix, None, ("", ""), RecordingSystemctl(), install.Report(),
                     before_restart=lambda: steps.append("stop old hub, migrate"))
    assert steps == ["write files", "check fragments", "stop old hub, migrate", "start hub", "wait for hub",
                     "record release"]


OLD_HUB_TREE = r"""
import os, signal, subprocess, sys, time
# a server the old hub started, as a child that outlives whatever stop does not reach it (here: none does)
child = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                          "open(%r, 'w').write('up'); time.sleep(600)"])
time.sleep(600)
"""


def test_the_upgrades_stop_ends_what_the_old_hub_started_even_when_the_units_stop_left_it(install, monkeypatch,
                                                                                        tmp_path):
    """In full test runs a server the old hub (KillMode=process) started outlived stop_all: here the stop reaches
    nothing at all, and the migration still ends the old hub's tree, a SIGTERM-ignoring child included."""
    import subprocess
    import sys
    import time

    import psutil

    ready = tmp_path / "child-up"
    hub = subprocess.Popen([sys.executable, "-c", OLD_HUB_TREE % str(ready)])
    child = None
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        [child] = psutil.Process(hub.pid).children()
        systemctl = RecordingSystemctl(units={"jupyterhub.service": {"MainPID": str(hub.pid)}})
        monkeypatch.setattr(release_change.subprocess, "run",
                            lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, "", ""))
        monkeypatch.setattr(release_change, "jupyterhub_version", lambda: "6.1.1")
        release_change.migrate(install, release_change.load_settings(install), systemctl, tmp_path / "no-backup")
        assert ("stop", "jupyterhub.service") in systemctl.calls
        hub.wait(5)  # the hub itself: a child of this test, reaped here
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    finally:
        if child is not None and child.is_running():
            child.kill()
        if hub.poll() is None:
            hub.kill()
            hub.wait()


def backup_at(install, revision: str | None):
    """An upgrade's backup of a SQLite database whose schema is at `revision` (None: no alembic table)."""
    backup = install.backups / "20261207T000000Z-from-2026.10.0"
    backup.mkdir(parents=True)
    db = sqlite3.connect(backup / install.db_file.name)
    db.execute("create table users (name text)")
    if revision:
        db.execute("create table alembic_version (version_num varchar(32) not null)")
        db.execute("insert into alembic_version values (?)", (revision,))
    db.commit()
    db.close()
    return backup


HEAD = release_change.jupyterhub_schema_head()


@pytest.mark.parametrize("revision, fragment, migrated", [
    (HEAD, None, False),  # this JupyterHub's schema already: no upgrade-db while the hub is down
    ("ff1860e38070", None, True),  # the revision before 6.x's last (JupyterHub 5's head)
    (None, None, True),  # no revision recorded
    (HEAD, "c.JupyterHub.db_url = 'sqlite:////srv/hub.sqlite'\n", True),  # the hub may use another database
], ids=["current", "older", "no revision", "a fragment's db_url"])
def test_an_upgrade_runs_upgrade_db_only_when_the_schema_is_older_than_this_jupyterhubs(
        install, monkeypatch, revision, fragment, migrated):
    backup = backup_at(install, revision)
    if fragment:
        install.config_d.mkdir(parents=True, exist_ok=True)
        (install.config_d / "40-db.py").write_text(fragment)
    ran = []
    monkeypatch.setattr(release_change.subprocess, "run",
                        lambda cmd, **kw: ran.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    systemctl = RecordingSystemctl(units={"jupyterhub.service": {"MainPID": "0"}})
    release_change.migrate(install, release_change.load_settings(install), systemctl, backup)
    assert ("stop", "jupyterhub.service") in systemctl.calls  # stopped either way
    assert [cmd[1:2] for cmd in ran] == ([["upgrade-db"]] if migrated else [])


def test_a_postgresql_database_is_always_migrated(install, monkeypatch):
    backup = backup_at(install, HEAD)
    settings = dataclasses.replace(release_change.load_settings(install), db_url="postgresql://hub@/hub")
    assert not release_change.schema_is_current(install, settings, backup)
    assert release_change.schema_is_current(install, release_change.load_settings(install), backup)
