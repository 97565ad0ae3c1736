"""barehub.usage (sums over a window, its outputs) and `barehub usage` on sessions from stand-in sources."""
from __future__ import annotations

import csv
import io
import json
import types

import pytest

from barehub import cli, usage, usage_sources
from barehub.base.errors import BarehubError
from barehub.usage import GIB, HOUR, Session, Window

DAY = 24 * HOUR
DEC_1 = usage.parse_when("2026-12-01", "--since")
JAN_1 = usage.parse_when("2027-01-01", "--until")


def session(user="ann", group="physics", start=DEC_1, hours=2.0, cpu_hours=1.0, gpus=0, profile="", end=True,
            peak=None, avg=None, source="local"):
    return Session(source, f"{user}-{start}", user, group, profile, start, start + hours * HOUR if end else None,
                   cpu_hours * HOUR, gpus, peak, avg)


def test_a_session_inside_the_window_counts_whole():
    report = usage.summarize([session(hours=2, cpu_hours=1.5, gpus=2, peak=4 * GIB, avg=2 * GIB)],
                             Window(DEC_1, JAN_1), "user", JAN_1)
    [row] = report.rows
    assert (row.key, row.sessions, row.wall_hours, row.cpu_hours, row.gpu_hours) == ("ann", 1, 2, 1.5, 4)
    assert (row.mem_peak_gib, row.mem_avg_gib, row.mem_gib_hours) == (4, 2, 4)


def test_a_session_across_the_edge_counts_its_part_and_adjacent_windows_add_up():
    """A 10 h session from Nov 30 20:00 to Dec 1 06:00: 4 h in November, 6 h in December, and the CPU in
    proportion; the two months add up to the session."""
    nov_30_20h = DEC_1 - 4 * HOUR
    s = session(start=nov_30_20h, hours=10, cpu_hours=5, gpus=1)
    nov = usage.summarize([s], Window(DEC_1 - 30 * DAY, DEC_1), "user", JAN_1).total
    dec = usage.summarize([s], Window(DEC_1, JAN_1), "user", JAN_1).total
    assert (nov.wall_hours, nov.cpu_hours, nov.gpu_hours) == pytest.approx((4, 2, 4))
    assert (dec.wall_hours, dec.cpu_hours, dec.gpu_hours) == pytest.approx((6, 3, 6))
    assert nov.sessions == dec.sessions == 1


def test_a_running_session_counts_until_now_and_sessions_outside_do_not():
    now = DEC_1 + 3 * HOUR
    running = session(start=DEC_1 + HOUR, cpu_hours=0.5, end=False)
    before = session(user="bob", start=DEC_1 - 3 * DAY)
    report = usage.summarize([running, before], Window(DEC_1, JAN_1), "user", now)
    assert [(r.key, r.wall_hours, r.cpu_hours) for r in report.rows] == [("ann", 2, 0.5)]


def test_rows_by_group_and_profile_and_the_total_adds_up():
    sessions = [session("ann", "physics", profile="gpu", gpus=1), session("bob", "physics", profile="cpu"),
                session("cid", "chem", profile="cpu", cpu_hours=3, peak=GIB, avg=GIB)]
    by_group = usage.summarize(sessions, Window(DEC_1, JAN_1), "group", JAN_1)
    assert [(r.key, r.sessions, r.cpu_hours, r.gpu_hours) for r in by_group.rows] == [
        ("chem", 1, 3, 0), ("physics", 2, 2, 2)]
    assert by_group.total.cpu_hours == sum(r.cpu_hours for r in by_group.rows) == 5
    assert by_group.total.sessions == 3 and by_group.total.mem_peak_gib == 1
    by_profile = usage.summarize(sessions + [session("dan", "")], Window(DEC_1, JAN_1), "profile", JAN_1)
    assert [r.key for r in by_profile.rows] == ["(unknown)", "cpu", "gpu"]


def test_csv_opens_as_a_sheet_with_a_total_that_adds_up():
    sessions = [session("ann", cpu_hours=1.25), session("bob", cpu_hours=2.5, gpus=1)]
    text = usage.as_csv(usage.summarize(sessions, Window(DEC_1, JAN_1), "user", JAN_1))
    lines = list(csv.DictReader(io.StringIO(text)))
    assert [line["user"] for line in lines] == ["ann", "bob", "total"]
    assert lines[0]["since_utc"] == "2026-12-01T00:00:00Z" and lines[0]["until_utc"] == "2027-01-01T00:00:00Z"
    assert float(lines[2]["cpu_hours"]) == float(lines[0]["cpu_hours"]) + float(lines[1]["cpu_hours"]) == 3.75
    assert lines[0]["mem_peak_gib"] == ""  # unknown, not zero


@pytest.mark.parametrize("text, expected", [
    ("2026-12-01", "2026-12-01T00:00:00Z"), ("2026-12-01T08:30", "2026-12-01T08:30:00Z"),
    ("2026-12-01T08:30:00+01:00", "2026-12-01T07:30:00Z"), ("2026-12-01T08:30:00Z", "2026-12-01T08:30:00Z")])
def test_dates_are_utc_unless_they_say_their_zone(text, expected):
    assert usage.iso(usage.parse_when(text, "--since")) == expected


@pytest.mark.parametrize("since, until, words", [
    ("last tuesday", None, "--since 'last tuesday' is not a date"),
    ("2026-12-05", "2026-12-01", "--until (2026-12-01T00:00:00Z) is not after --since"),
    (None, "13/2026", "--until '13/2026' is not a date")])
def test_a_bad_window_is_refused_naming_the_flag(since, until, words):
    with pytest.raises(BarehubError, match="^" + words.replace("(", r"\(").replace(")", r"\)")) as e:
        usage.window_of(since, until, JAN_1)
    assert "ISO 8601" in e.value.hint or "ends after" in e.value.hint


def test_this_month_is_the_calendar_month_in_utc():
    window = usage.this_month(usage.parse_when("2026-12-31T23:59:59Z", "--since"))
    assert (usage.iso(window.since), usage.iso(window.until)) == ("2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z")


@pytest.fixture
def sources(monkeypatch, prefix):
    """`barehub usage` on an install whose sources answer these sessions."""
    found = {"local": [], "slurm": None}

    def gather(paths, window, now, source="all"):
        if isinstance(found["slurm"], Exception) and source != "local":
            raise found["slurm"]
        sessions = list(found["local"]) + (found["slurm"] or [] if source != "local" else [])
        return usage_sources.Gathered(sessions, ["stand-in"])

    monkeypatch.setattr(usage_sources, "gather", gather)
    return found


def run_usage(prefix, capsys, *args):
    prefix.settings_file.write_text("{}")
    code = cli.main(["usage", "--prefix", str(prefix.prefix), *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_command_prints_a_user_only_her_sessions_as_json(sources, prefix, capsys):
    sources["local"] = [session("ann", cpu_hours=1), session("bob", cpu_hours=2)]
    code, out, _ = run_usage(prefix, capsys, "--since", "2026-12-01", "--until", "2027-01-01", "--user", "bob",
                             "--json")
    report = json.loads(out)
    assert code == 0 and report["timezone"] == "UTC" and report["since"] == "2026-12-01T00:00:00Z"
    assert [(r["key"], r["cpu_hours"]) for r in report["rows"]] == [("bob", 2)]


def test_the_command_refuses_an_unknown_group_and_a_source_that_is_down(sources, prefix, capsys):
    code, _, err = run_usage(prefix, capsys, "--group", "no-such-group-here")
    assert code == 1 and "--group 'no-such-group-here': no such unix group" in err
    sources["slurm"] = BarehubError("Slurm's accounting (slurmdbd) did not answer", "systemctl status slurmdbd")
    code, out, err = run_usage(prefix, capsys, "--csv")
    assert code == 1 and out == "" and "slurmdbd" in err
    code, out, _ = run_usage(prefix, capsys, "--csv", "--source", "local")
    assert code == 0 and out.splitlines()[-1].startswith("total,")


def test_all_sources_count_local_servers_alone_where_slurm_has_no_accounting_but_fail_where_slurmdbd_is_down(
        monkeypatch, prefix):
    """A login node with Slurm's commands but accounting off (or no slurm.conf) has only local sessions; slurmdbd
    down is an error, with --source all too; --source slurm is an error either way."""
    import barehub.usage_ledger as ledger
    import barehub.usage_slurm as slurm

    monkeypatch.setattr(ledger, "sessions", lambda paths, window, now, **_: [session()])
    monkeypatch.setattr(usage_sources, "slurm_here", lambda: True)
    window = Window(DEC_1, JAN_1)
    for said, absent in (("Slurm accounting storage is disabled", True),
                         ("sacct: fatal: Could not establish a configuration source", True),
                         ("sacct: error: Problem talking to the database: Connection refused", False)):
        monkeypatch.setattr(slurm, "_run", lambda argv, env, timeout, said=said: types.SimpleNamespace(
            returncode=1, stdout="", stderr=said))
        if absent:
            found = usage_sources.gather(prefix, window, JAN_1)
            assert len(found.sessions) == 1 and "Slurm jobs: none counted here" in found.sources[-1]
        else:
            with pytest.raises(BarehubError, match="slurmdbd"):
                usage_sources.gather(prefix, window, JAN_1)
        with pytest.raises(BarehubError):
            usage_sources.gather(prefix, window, JAN_1, "slurm")


def test_a_hub_that_cannot_read_roots_ledger_counts_its_slurm_jobs_alone(monkeypatch, prefix):
    """A --hub-user hub (Slurm through sudo) runs no local servers and cannot read root's 0700 ledger: its usage
    page, metrics and quotas count its Slurm jobs, and say that local servers were not counted."""
    import barehub.usage_ledger as ledger
    import barehub.usage_slurm as slurm

    def unreadable(paths, window, now, **_):
        raise ledger.LedgerUnreadable("cannot read the usage ledger (root's)", hint="run as root")

    monkeypatch.setattr(ledger, "sessions", unreadable)
    monkeypatch.setattr(slurm, "sessions", lambda window, now: [session(source="slurm")])
    monkeypatch.setattr(usage_sources, "slurm_here", lambda: True)
    found = usage_sources.gather(prefix, Window(DEC_1, JAN_1), JAN_1)
    assert [s.source for s in found.sessions] == ["slurm"]
    assert found.sources[0].startswith("local servers: none counted (cannot read the usage ledger")
    with pytest.raises(BarehubError, match="cannot read the usage ledger"):
        usage_sources.gather(prefix, Window(DEC_1, JAN_1), JAN_1, "local")
