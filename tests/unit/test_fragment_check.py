"""The fragments' check refuses with each problem's file and line as fields, which every caller words for what
it did not do; a refusal is kept for `barehub status` until a check passes."""
import os
import subprocess

import pytest

from barehub import cli, release_change, releases
from barehub.commands import install, reload
from barehub.fragment_check import FragmentProblems, check_and_record, check_fragments, read_refusal
from barehub.base.errors import BarehubError

BAD = "c.JupyterHub.admin_users = {'alice'}\nc.Spawner.start_timeout = soon\n"  # line 2: NameError


class HubSystemctl:
    """A running hub, as systemd answers for it; records what it is asked to do."""

    def __init__(self):
        self.calls = []

    def main_pid(self, unit):
        return 0

    def is_active(self, unit):
        return True

    def kill_main(self, unit, sig):
        self.calls.append(("kill", unit, sig))

    def run(self, *args, check=True):
        return subprocess.CompletedProcess(args, 0, stdout="systemd 252 (252.30-1)\n")


@pytest.fixture
def bad(prefix):
    prefix.settings_file.write_text("{}\n")  # an install
    (prefix.config_d / "10-good.py").write_text("c.Spawner.mem_limit = '2G'\n")
    (prefix.config_d / "50-bad.py").write_text(BAD)
    return prefix


def test_the_refusal_carries_each_problems_file_line_and_message(bad):
    with pytest.raises(FragmentProblems) as e:
        check_fragments(bad, HubSystemctl())
    [problem] = e.value.problems
    assert (problem.file, problem.line) == (bad.config_d / "50-bad.py", 2)
    assert problem.message == "NameError: name 'soon' is not defined"
    assert e.value.config_d == bad.config_d
    assert e.value.refusal("not upgrading") == \
        f"the hub config has problems; not upgrading:\n  {bad.config_d}/50-bad.py:2: {problem.message}"
    assert not bad.fragment_check_file.exists()  # an upgrade's check (the new release's verdict) records nothing


def test_each_caller_says_what_it_did_not_do(bad, monkeypatch):
    where = f"{bad.config_d}/50-bad.py:2: NameError"
    systemctl = HubSystemctl()
    with pytest.raises(BarehubError) as e:
        reload.reload(bad, systemctl)
    assert e.value.message.startswith("the hub config has problems; the running hub was left alone:\n") \
        and where in e.value.message and "systemctl reload jupyterhub" in e.value.hint
    assert systemctl.calls == []  # the hub was not signalled

    with pytest.raises(BarehubError) as e:
        install.refuse_broken_fragments(bad, systemctl)
    assert e.value.message.startswith("the hub config has problems; not (re)starting the hub:\n") \
        and where in e.value.message and "run the installer again" in e.value.hint

    with pytest.raises(BarehubError) as e:
        release_change.preflight(bad, releases.Release("2026.10.0", "envs/2026.10.0"), systemctl)
    assert "refuses this install's config, so nothing was changed (release 2026.10.0 keeps running):\n" \
           "the hub config has problems; not upgrading:\n" in e.value.message and where in e.value.message
    assert "left alone" not in e.value.message


def test_a_refused_reload_names_file_and_line_where_systemctl_status_shows_it(bad, monkeypatch, capsys):
    """The unit's ExecReload is `barehub reload`: what it prints goes to the hub unit's journal."""
    monkeypatch.setattr(reload, "Systemctl", HubSystemctl)
    assert cli.main(["reload", "--prefix", str(bad.prefix)]) == 1
    err = capsys.readouterr().err
    assert f"\n  {bad.config_d}/50-bad.py:2: NameError: name 'soon' is not defined\n" in err


def test_a_refusal_is_kept_for_status_until_a_check_passes(bad):
    with pytest.raises(FragmentProblems):
        check_and_record(bad, HubSystemctl())
    assert bad.fragment_check_file.stat().st_mode & 0o777 == 0o600  # a message may quote a fragment's secret
    refusal = read_refusal(bad)
    assert refusal.current
    assert [(p.file, p.line) for p in refusal.problems] == [(bad.config_d / "50-bad.py", 2)]

    (bad.config_d / "50-bad.py").write_text(BAD + "# edited\n")
    assert read_refusal(bad).current is False  # the files changed since: not known to fail
    (bad.config_d / "50-bad.py").write_text(BAD)
    assert read_refusal(bad).current is True

    (bad.config_d / "50-bad.py").write_text("c.Spawner.start_timeout = 120\n")
    assert check_and_record(bad, HubSystemctl()) == 2
    assert read_refusal(bad) is None and not bad.fragment_check_file.exists()


def test_an_unreadable_record_is_no_refusal(bad):
    for text in ("", "[]", '{"problems": "x", "checked": 1}', '{"problems": [], "checked": 1}'):
        bad.fragment_check_file.write_text(text)
        assert read_refusal(bad) is None, text
    bad.fragment_check_file.unlink()
    bad.fragment_check_file.symlink_to(bad.config_d / "50-bad.py")
    assert read_refusal(bad) is None


def test_another_users_check_says_what_it_found_and_records_nothing(bad, monkeypatch):
    """records/ is root's: a user's `barehub check` must not fail on writing there (nor clear root's record)."""
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(FragmentProblems) as refused:
        check_and_record(bad, HubSystemctl())
    assert "50-bad.py:2:" in refused.value.message and not bad.fragment_check_file.exists()
