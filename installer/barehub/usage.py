"""Who used how much: sessions (local server units, Slurm jobs) summed per user, group or profile over a window
of time (pure: the sources are barehub.usage_ledger and barehub.usage_slurm).

JupyterHub keeps no usage counters (its #3884, #3818). The machines do: systemd accounts each local server's
unit (its cgroup's CPU time and memory) and Slurm's accounting database each job. A session is one server's run,
from either, in one shape (`Session`); everything here works on that shape alone, so `barehub usage`, the
Prometheus metrics, the quotas and a user's own page say the same numbers.

A session that straddles the window's edge counts with the part of it inside the window: its wall time is cut at
the edges, and its CPU, GPU and memory hours are taken in proportion (the figures of a session are totals, not a
time series). So the months of a year add up to the year, and a report for a funding body adds up. Times are UTC.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone

from barehub.base.errors import BarehubError
from barehub.utc_time import iso

GIB = 1024 ** 3
HOUR = 3600.0
BY = ("user", "group", "profile")
COLUMNS = ("sessions", "wall_hours", "cpu_hours", "gpu_hours", "mem_peak_gib", "mem_avg_gib", "mem_gib_hours")


@dataclass(frozen=True)
class Session:
    """One server's run. `end` is None while it runs (its figures then are as of now). Memory figures are None
    where the source has none (a job that ended before its first accounting sample)."""
    source: str  # "local" (a systemd unit) or "slurm" (a job)
    id: str  # "UNIT@INVOCATION_ID" or the Slurm job id
    user: str
    group: str  # the user's primary unix group when the session ran ("" unknown)
    profile: str  # the spawn profile's label ("" unknown)
    start: float  # epoch seconds
    end: float | None
    cpu_s: float  # CPU time used, all its processes
    gpus: int = 0  # GPUs allocated
    mem_peak_bytes: int | None = None
    mem_avg_bytes: int | None = None
    server: str = ""  # the server's name ("" the default server)
    note: str = ""  # how the figures were obtained, when not the usual way ("ended while unobserved: ...")

    def wall_s(self, now: float) -> float:
        return max(0.0, (self.end if self.end is not None else now) - self.start)


@dataclass(frozen=True)
class Window:
    since: float
    until: float

    def describe(self) -> str:
        return f"{iso(self.since)} to {iso(self.until)} (UTC)"


def parse_when(text: str, flag: str) -> float:
    """A date or a moment on the command line, in UTC unless it says its zone: 2026-12-01, 2026-12-01T08:00,
    2026-12-01T08:00:00+01:00, or "today" (midnight UTC)."""
    if text == "today":
        return month_start_like(datetime.now(timezone.utc), day=True)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BarehubError(f"{flag} {text!r} is not a date",
                           hint="give a date or a moment in ISO 8601, in UTC unless it says its zone: "
                                "2026-12-01, 2026-12-01T08:00, 2026-12-01T08:00:00+01:00") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def month_start_like(moment: datetime, day: bool = False) -> float:
    """Midnight UTC of the moment's first of the month (of its day, with day=True)."""
    moment = moment.astimezone(timezone.utc)
    return moment.replace(day=moment.day if day else 1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def this_month(now: float) -> Window:
    """The calendar month (UTC) that holds `now`: what quotas count and the metrics report."""
    start = datetime.fromtimestamp(now, timezone.utc).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return Window(start.timestamp(), next_month(start).timestamp())


def next_month(start: datetime) -> datetime:
    return (start.replace(day=28) + timedelta(days=4)).replace(day=1)


def default_window(now: float) -> Window:
    """`barehub usage` with neither --since nor --until: this month so far."""
    return Window(this_month(now).since, now)


def window_of(since: str | None, until: str | None, now: float) -> Window:
    """The window of --since/--until: since the first of this month until now unless given."""
    start = parse_when(since, "--since") if since else this_month(now).since
    end = parse_when(until, "--until") if until else now
    if end <= start:
        raise BarehubError(f"--until ({iso(end)}) is not after --since ({iso(start)})",
                           hint="give a window that ends after it starts")
    return Window(start, end)


@dataclass
class Row:
    key: str
    sessions: int = 0
    wall_hours: float = 0.0
    cpu_hours: float = 0.0
    gpu_hours: float = 0.0
    mem_peak_gib: float | None = None
    mem_gib_hours: float = 0.0
    mem_hours_known: float = field(default=0.0, repr=False)  # wall hours of the sessions whose memory is known

    @property
    def mem_avg_gib(self) -> float | None:
        """The time-weighted average memory of the sessions whose memory is known."""
        return self.mem_gib_hours / self.mem_hours_known if self.mem_hours_known else None

    def add(self, session: Session, wall_s: float, share: float) -> None:
        self.sessions += 1
        self.wall_hours += wall_s / HOUR
        self.cpu_hours += session.cpu_s * share / HOUR
        self.gpu_hours += session.gpus * wall_s / HOUR
        if session.mem_peak_bytes is not None:
            peak = session.mem_peak_bytes / GIB
            self.mem_peak_gib = peak if self.mem_peak_gib is None else max(self.mem_peak_gib, peak)
        if session.mem_avg_bytes is not None:
            self.mem_gib_hours += session.mem_avg_bytes / GIB * wall_s / HOUR
            self.mem_hours_known += wall_s / HOUR

    def as_dict(self) -> dict:
        return {"key": self.key, "sessions": self.sessions, "wall_hours": self.wall_hours,
                "cpu_hours": self.cpu_hours, "gpu_hours": self.gpu_hours, "mem_peak_gib": self.mem_peak_gib,
                "mem_avg_gib": self.mem_avg_gib, "mem_gib_hours": self.mem_gib_hours}


def in_window(session: Session, window: Window, now: float) -> tuple[float, float]:
    """The session's wall seconds inside the window, and the share of its figures that makes (0 outside)."""
    end = session.end if session.end is not None else now
    inside = min(end, window.until) - max(session.start, window.since)
    if inside <= 0 and not (session.start == end and window.since <= session.start < window.until):
        return 0.0, 0.0
    whole = end - session.start
    return max(0.0, inside), (max(0.0, inside) / whole if whole > 0 else 1.0)


def key_of(session: Session, by: str) -> str:
    return {"user": session.user, "group": session.group, "profile": session.profile}[by] or "(unknown)"


@dataclass
class Report:
    window: Window
    by: str
    rows: list[Row]
    total: Row
    sources: list[str]  # what was asked: "local: 12 sessions", "slurm: 3 jobs"

    def as_dict(self) -> dict:
        return {"since": iso(self.window.since), "until": iso(self.window.until), "timezone": "UTC",
                "by": self.by, "sources": self.sources, "rows": [row.as_dict() for row in self.rows],
                "total": self.total.as_dict()}


def summarize(sessions: list[Session], window: Window, by: str, now: float,
              sources: list[str] | None = None) -> Report:
    """Each key's sessions that overlap the window, with the parts inside it; the total row adds up the rows
    (its peak is the largest)."""
    if by not in BY:
        raise BarehubError(f"--by {by!r} is not one of {', '.join(BY)}")
    rows: dict[str, Row] = {}
    total = Row("total")
    for session in sessions:
        wall_s, share = in_window(session, window, now)
        if share <= 0:
            continue
        key = key_of(session, by)
        rows.setdefault(key, Row(key)).add(session, wall_s, share)
        total.add(session, wall_s, share)
    return Report(window, by, sorted(rows.values(), key=lambda row: row.key), total, list(sources or []))


def figure(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def as_csv(report: Report) -> str:
    """One header line, a line per key, and a total line: opens in a spreadsheet as it is (plain decimals,
    no units in the cells; the units and the zone are in the header)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([report.by, "since_utc", "until_utc", "sessions", "wall_hours", "cpu_hours", "gpu_hours",
                     "mem_peak_gib", "mem_avg_gib", "mem_gib_hours"])
    for row in [*report.rows, report.total]:
        writer.writerow([row.key, iso(report.window.since), iso(report.window.until), row.sessions,
                         figure(row.wall_hours, 4), figure(row.cpu_hours, 4), figure(row.gpu_hours, 4),
                         figure(row.mem_peak_gib, 3), figure(row.mem_avg_gib, 3), figure(row.mem_gib_hours, 4)])
    return out.getvalue()


def as_json(report: Report) -> str:
    return json.dumps(report.as_dict(), indent=2)


def as_table(report: Report) -> str:
    header = (report.by, "sessions", "wall h", "CPU h", "GPU h", "peak GiB", "avg GiB", "GiB h")
    lines = [[row.key, str(row.sessions), figure(row.wall_hours), figure(row.cpu_hours), figure(row.gpu_hours),
              figure(row.mem_peak_gib), figure(row.mem_avg_gib), figure(row.mem_gib_hours)]
             for row in [*report.rows, report.total]]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]
    text = [f"Usage {report.window.describe()}, by {report.by}"]
    text += [f"  {source}" for source in report.sources]
    for n, cells in enumerate([header, *lines]):
        if n == len(lines):  # the total's line
            text.append("  ".join("-" * width for width in widths))
        text.append("  ".join(cell.ljust(width) if i == 0 else cell.rjust(width)
                              for i, (cell, width) in enumerate(zip(cells, widths))))
    return "\n".join(text)


def session_dict(session: Session) -> dict:
    return asdict(session)
