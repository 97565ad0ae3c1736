"""An upgrade runs in a transient unit of its own (barehub.base.upgrade_unit): the command that starts it, when a
bootstrap.py run hands over to it, a second one refused, and the followed output where a foreground run put it.
(The unit itself, outliving a killed client, is in tests/integration/test_upgrade.py.)"""
import io

import pytest

from barehub.base import upgrade_unit
from barehub.base.errors import BarehubError
from barehub.base.install_lock import InstallLock


def test_the_unit_is_the_installs_own_and_takes_what_finds_conda_and_the_index(prefix):
    environ = {"PATH": "/opt/conda/bin:/usr/bin", "PIP_INDEX_URL": "https://mirror/simple", "https_proxy": "http://p:3128",
               "HOME": "/root", "SSH_CONNECTION": "10.0.0.1 22", "BAREHUB_LOCK_FD": "3"}
    command = upgrade_unit.unit_command(prefix, ["/usr/bin/python3", "/srv/bootstrap.py", "--version", "X"], environ,
                                        cwd="/root/checkout")
    unit = prefix.upgrade_unit
    assert unit.startswith("barehub-upgrade-") and unit.endswith(".service") and "/" not in unit
    assert command[:7] == ["systemd-run", f"--unit={unit}", "--collect", "--wait", "--quiet", "--service-type=exec",
                           f"--description=barehub upgrade of {prefix.prefix}"]
    assert "--working-directory=/root/checkout" in command  # relative paths in the arguments stay what they were
    passed = [arg.split("=", 1)[1] for arg in command if arg.startswith("--setenv=")]
    assert passed == ["HOME=/root", "PATH=/opt/conda/bin:/usr/bin", "PIP_INDEX_URL=https://mirror/simple", "https_proxy=http://p:3128",
                      f"BAREHUB_UPGRADE_UNIT={unit}", "PYTHONUNBUFFERED=1"]
    assert command[command.index("--") + 1:] == ["/usr/bin/python3", "/srv/bootstrap.py", "--version", "X"]


def test_only_a_change_of_release_of_an_existing_install_hands_over_to_the_unit(prefix, monkeypatch):
    monkeypatch.setattr(upgrade_unit.os, "geteuid", lambda: 0)
    monkeypatch.setattr(upgrade_unit.os.path, "isdir", lambda path: path == "/run/systemd/system")
    monkeypatch.delenv(upgrade_unit.IN_UNIT_ENV, raising=False)
    assert not upgrade_unit.wanted(prefix, None, "2026.12.0")  # a first install: no hub to keep
    prefix.release_file.write_text('{"version": "2026.10.0", "env": "envs/2026.10.0"}')
    assert upgrade_unit.wanted(prefix, None, "2026.12.0")  # this checkout's release
    assert upgrade_unit.wanted(prefix, "2026.12.0", "2026.10.0") and upgrade_unit.wanted(prefix, "latest", "2026.10.0")
    assert not upgrade_unit.wanted(prefix, "2026.10.0", "2026.12.0")  # a re-run that converges
    monkeypatch.setenv(upgrade_unit.IN_UNIT_ENV, prefix.upgrade_unit)
    assert not upgrade_unit.wanted(prefix, "2026.12.0", "2026.10.0")  # the run inside the unit does the work


def test_a_second_upgrade_is_refused_naming_the_first(prefix, monkeypatch):
    monkeypatch.setattr(upgrade_unit, "is_running", lambda paths: True)
    with pytest.raises(BarehubError) as e:
        upgrade_unit.refuse_a_second(prefix)
    assert e.value.message.endswith(f"is already running (unit {prefix.upgrade_unit})")
    assert e.value.exit_code == 75 and f"journalctl -fu {prefix.upgrade_unit}" in e.value.hint
    monkeypatch.setattr(upgrade_unit, "is_running", lambda paths: False)
    lock = InstallLock(prefix).acquire()  # a reload, say
    try:
        with pytest.raises(BarehubError, match="another barehub run is changing") as e:
            upgrade_unit.refuse_a_second(prefix)
        assert e.value.exit_code == 75
    finally:
        lock.release()
    upgrade_unit.refuse_a_second(prefix)  # nobody: fine


def test_the_followed_output_keeps_errors_on_stderr_and_ends_with_the_unit(monkeypatch):
    pages = [["barehub-bootstrap: [4/4] running the installer"],
             ["barehub: release 2026.10.0 -> 2026.12.0: backed up", "barehub: error: the upgrade to 2026.12.0 failed: x",
              "rolled back: release 2026.10.0 serves again, with its database", "barehub: hint: fix the cause"]]
    asked = []

    def journal(unit, since, cursor):
        asked.append(cursor)
        return (pages.pop(0) if pages else []), f"c{len(asked)}"
    monkeypatch.setattr(upgrade_unit, "journal_lines", journal)
    monkeypatch.setattr(upgrade_unit.subprocess, "run", lambda *a, **k: None)  # journalctl --sync
    monkeypatch.setattr(upgrade_unit, "FOLLOW_INTERVAL_S", 0)
    ends = iter([None, None, 1])
    out, err = io.StringIO(), io.StringIO()
    assert upgrade_unit.follow("u.service", 0.0, lambda: next(ends), out, err) == 5
    assert out.getvalue() == "barehub-bootstrap: [4/4] running the installer\nbarehub: release 2026.10.0 -> " \
                             "2026.12.0: backed up\n"
    assert err.getvalue().startswith("barehub: error: the upgrade to 2026.12.0 failed: x\nrolled back: release")
    assert asked == [None, "c1", "c2"]  # each read goes on from the last one's cursor; the last after the end


def test_a_rollback_run_by_root_hands_itself_over_to_the_installs_unit(prefix, monkeypatch):
    """`barehub rollback` (the command that ends an interrupted upgrade) outlives the admin's session too: the same
    unit, described as a rollback, running this same rollback; inside the unit it does the work itself."""
    import argparse
    import sys

    from barehub.commands import rollback

    handed = {}

    def run_in_unit(paths, argv, say, what="upgrade"):
        handed.update(argv=argv, what=what, command=upgrade_unit.unit_command(paths, argv, {}, "/", what=what))
        return 0
    monkeypatch.setattr(upgrade_unit, "run_in_unit", run_in_unit)
    monkeypatch.setattr(upgrade_unit, "can_hand_over", lambda: True)
    backup = an_install_with_a_backup(prefix)
    args = argparse.Namespace(prefix=str(prefix.prefix), backup=backup.name, list=False, creates_install=False)
    assert rollback.run(args) == 0
    assert handed["what"] == "rollback"
    assert handed["argv"] == [sys.executable, "-P", "-m", "barehub", "rollback", "--prefix", str(prefix.prefix),
                              "--backup", backup.name]
    assert f"--description=barehub rollback of {prefix.prefix}" in handed["command"]
    monkeypatch.setattr(upgrade_unit, "can_hand_over", lambda: False)  # inside the unit: the rollback itself
    monkeypatch.setattr(rollback, "InstallLock", lambda paths: (_ for _ in ()).throw(RuntimeError("did the work")))
    with pytest.raises(RuntimeError, match="did the work"):
        rollback.run(args)


def an_install_with_a_backup(prefix):
    """An install of 2026.12.0 upgraded from 2026.10.0, whose env is still there: the backup to go back to."""
    import sqlite3

    from barehub import releases

    prefix.settings_file.write_text("{}")
    sqlite3.connect(prefix.db_file).close()
    old = releases.Release("2026.10.0", "envs/2026.10.0")
    (prefix.envs / old.version / "bin").mkdir(parents=True)
    (prefix.envs / old.version / "bin" / "python").touch()
    releases.write_release(prefix, old)
    return releases.backup(prefix, old)


@pytest.mark.parametrize("backup", [None, "20261206T190000Z-from-2026.09.0"])
def test_a_rollback_that_cannot_be_done_is_refused_before_any_unit_starts(prefix, monkeypatch, backup):
    """No backup (or not that one): said at once, by the command the admin ran. Handed to the unit, the refusal
    came only after systemd-run, and in a full test run systemd-run's own refusal of a name still loaded hid it."""
    import argparse

    from barehub.commands import rollback

    monkeypatch.setattr(upgrade_unit, "can_hand_over", lambda: True)
    monkeypatch.setattr(upgrade_unit, "run_in_unit", lambda *a, **k: pytest.fail("handed over"))
    prefix.settings_file.write_text("{}")
    args = argparse.Namespace(prefix=str(prefix.prefix), backup=backup, list=False, creates_install=False)
    with pytest.raises(BarehubError, match="no backup"):
        rollback.run(args)


def test_a_rollback_in_the_unit_is_named_a_rollback_by_status(prefix):
    from barehub.commands.status import format_status, upgrade_state
    from tests.unit.conftest import RecordingSystemctl
    from tests.unit.test_status import upgrade_status

    systemctl = RecordingSystemctl(units={prefix.upgrade_unit: {"Description": f"barehub rollback of {prefix.prefix}"}})
    systemctl.is_active = lambda unit: unit == prefix.upgrade_unit
    state = upgrade_state(prefix, systemctl)
    assert state["what"] == "rollback"
    assert f"rollback: running (unit {prefix.upgrade_unit}); follow it: journalctl -fu" in \
        format_status(upgrade_status(prefix, state))


def test_a_unit_left_by_an_earlier_run_is_unloaded_before_the_next_starts(prefix, monkeypatch):
    """A rollback that failed leaves its unit failed until systemd collects it: the next run resets it and waits
    for it to be gone, instead of systemd-run refusing "already loaded" (seen in a full test run)."""
    import subprocess

    seen, states = [], iter(["failed", "loaded", "not-found"])

    def run(cmd, **kwargs):
        seen.append(cmd[:2])
        out = next(states) if cmd[1] == "show" else ""
        return subprocess.CompletedProcess(cmd, 0, out, "")
    monkeypatch.setattr(upgrade_unit.subprocess, "run", run)
    upgrade_unit.clear_ended(prefix.upgrade_unit)
    assert seen == [["systemctl", "reset-failed"]] + [["systemctl", "show"]] * 3
