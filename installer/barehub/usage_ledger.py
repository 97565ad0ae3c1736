"""The local servers' usage ledger: what systemd accounted for each server unit, kept by root across hub restarts,
upgrades and reboots (the sessions barehub.usage sums).

systemd counts each server unit's CPU time (CPUUsageNSec, its cgroup's) and memory (MemoryCurrent; the cgroup's
peak in memory.peak on cgroup v2, memory.max_usage_in_bytes on v1), but forgets a transient unit once it ends.
So the figures are written down when it ends, by the unit itself: barehub.local_spawner gives each server unit
`ExecStopPost=-+PREFIX/conda/bin/python -I -m barehub.usage_ledger stop`, which systemd runs as root after the
server's processes are gone but while its cgroup (and so its counters) still exists. It appends one JSON line to
`records/usage/YYYY-MM.jsonl` (the month of the session's end), 0600 in a 0700 root directory.

The kernel keeps no integral of memory, so average memory comes from a sampler: barehub-usage.timer runs
`python -m barehub.usage_ledger sample` every minute, which adds each running server's MemoryCurrent to its
`records/usage/running/UNIT.json`. That file also carries the session's latest figures, so a server whose
ExecStopPost never ran (the machine lost power, or the unit was started by a release before this one) is still
written down by the next sampler run after it is gone, with the figures of its last sample: a reboot loses at
most one minute of a session. The hub plays no part: it may be stopped, restarted or upgraded meanwhile.

Root never follows a link here: every file is opened through barehub.base.records.open_no_follow, and the
directories are root's own (0700), where no user can plant one. The unit to account is found from
/proc/self/cgroup (the kernel's word), and its figures from systemd and the kernel's cgroup files, none of which
the server's user can write. The stop record runs as root with the unit's environment (systemd 252 has no
per-command environment): that environment is the hub's (JupyterHub's variables, the site's c.Spawner.environment,
the spawn profile base64-encoded), never the user's, who cannot change a running unit's properties; and whoever can
create transient system units, as the hub does, can already run anything as root, so this adds no way up. `-I`
keeps Python from reading PYTHON* variables and the user site directory all the same.
"""
from __future__ import annotations

import base64
import errno
import fcntl
import json
import os
import grp
import pwd
import sys
import time
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path

from barehub.base.errors import BarehubError
from barehub.base.paths import Paths
from barehub.base.records import open_no_follow
from barehub.fsutil import FileSpec, atomic_write
from barehub.systemd import Systemctl
from barehub.units import USER_UNITS_GLOB, USERS_SLICE
from barehub.usage import Session, Window

FORMAT = 1  # of a ledger line; a reader skips lines of a format it does not know
SESSION_FIELDS = tuple(f.name for f in fields(Session))
# The server unit's environment entries that carry what the hub knew at spawn (barehub.local_spawner): base64url,
# as systemd-run splits and unescapes an Environment= value and `systemctl show` quotes one with spaces; a profile
# label is free text ("1 GPU: 8 CPUs, 32 GB"), and "%" would be a unit specifier.
PROFILE_ENV = "BAREHUB_PROFILE_B64"
SERVER_ENV = "BAREHUB_SERVER_B64"
PROPERTIES = ("Id", "User", "InvocationID", "ActiveState", "ActiveEnterTimestamp", "ExecMainStartTimestamp",
              "CPUUsageNSec", "MemoryCurrent", "ControlGroup", "Slice", "Environment")
LIVE = ("active", "reloading", "deactivating")  # a unit whose session is not over (ExecStopPost is yet to come)
LOCK_WAIT_S = 10.0  # a sampler pass takes well under a second (one systemctl call); below a server unit's stop timeout (20 s)
UNOBSERVED = "ended while unobserved; figures as of the last sample"
ONE_READING = "average memory from one reading at the stop (it ran for less than one sampling interval)"
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNSET = 2 ** 64 - 1  # systemd's "no value" for a counter


# --- what systemd and the kernel say

def encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def decode(text: str) -> str:
    try:
        return base64.urlsafe_b64decode(text.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        return ""


def unit_environment(value: str) -> dict[str, str]:
    """Our entries of `systemctl show -p Environment`: space-separated NAME=VALUE (ours never hold a space)."""
    found = {}
    for word in value.split():
        name, _, encoded = word.strip('"').partition("=")
        if name in (PROFILE_ENV, SERVER_ENV) and name not in found:
            found[name] = decode(encoded)
    return found


def unit_of_cgroup(proc_cgroup: str) -> str:
    """The server unit whose cgroup the process is in, from /proc/PID/cgroup: the unified hierarchy's line
    ("0::/...", cgroup v2 and hybrid) or systemd's own (name=systemd, cgroup v1). Only a unit directly in the users'
    slice counts (its control processes may sit in a ".control" sub-cgroup); anything else is refused."""
    paths = {}
    for line in proc_cgroup.splitlines():
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":
            paths["unified"] = path
        elif "name=systemd" in controllers.split(","):
            paths["systemd"] = path
    path = paths.get("unified") or paths.get("systemd") or ""
    parts = [part for part in path.split("/") if part]
    if parts and parts[-1] == ".control":
        parts.pop()
    if len(parts) >= 2 and parts[-2] == USERS_SLICE and parts[-1].startswith("jupyter-") \
            and parts[-1].endswith(".service"):
        return parts[-1]
    raise BarehubError(f"this process is not in a server unit of {USERS_SLICE} (its cgroup: {path or 'unknown'})",
                       hint="`python -m barehub.usage_ledger stop` is run by systemd as a server unit's ExecStopPost")


def timestamp(value: str) -> float | None:
    """A timestamp of `systemctl show --timestamp=unix` ("@1765000000"); None when unset."""
    value = value.strip()
    if value.startswith("@"):
        try:
            return float(value[1:])
        except ValueError:
            return None
    return None


def counter(value: str) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None  # "[not set]", or absent
    return None if number == UNSET or number < 0 else number


def is_cgroup_v2(root: Path = CGROUP_ROOT) -> bool:
    return (root / "cgroup.controllers").exists()


def peak_memory(control_group: str, root: Path = CGROUP_ROOT) -> int | None:
    """The most memory the unit's cgroup has held since it was made: cgroup v2's memory.peak (kernel 5.19+), or
    v1's memory.max_usage_in_bytes in the memory hierarchy (MemoryAccounting=yes gives the unit a cgroup there).
    None where the kernel keeps none (a v2 kernel before 5.19: the samples' peak stands in)."""
    if not control_group.startswith("/"):
        return None
    relative = control_group.lstrip("/")
    path = (root / relative / "memory.peak") if is_cgroup_v2(root) else \
        (root / "memory" / relative / "memory.max_usage_in_bytes")
    return read_number(path)


def read_number(path: Path, key: str = "") -> int | None:
    """A counter in a cgroup file: the file's one number, or the value of `key` in a "key value" file."""
    try:
        fd = open_no_follow(path)
    except (OSError, BarehubError):
        return None
    with os.fdopen(fd) as f:
        text = f.read()
    if not key:
        return counter(text.strip())
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return counter(value.strip())
    return None


def cpu_seconds(props: dict[str, str], root: Path = CGROUP_ROOT) -> float | None:
    """The unit's CPU time so far: systemd's CPUUsageNSec, else the kernel's counter in its cgroup.

    systemd reads CPU only from a cgroup v2 host's cpu.stat or a v1 cpuacct hierarchy it put the unit in. On a
    v1 host that mounts cpu and cpuacct apart (this project's test containers: `4:memory:/...`, `2:cpuacct:/`),
    systemd leaves the unit in cpuacct's root and says "[not set]"; the unified hierarchy of a hybrid host
    still counts each unit's cgroup (cpu.stat usage_usec, kernel 4.15+), which is read then."""
    nsec = counter(props.get("CPUUsageNSec", ""))
    if nsec is not None:
        return nsec / 1e9
    control_group = props.get("ControlGroup", "")
    if not control_group.startswith("/"):
        return None
    relative = control_group.lstrip("/")
    if is_cgroup_v2(root):
        places = [(root / relative / "cpu.stat", "usage_usec", 1e6)]
    else:
        places = [(root / name / relative / "cpuacct.usage", "", 1e9) for name in ("cpu,cpuacct", "cpuacct")]
        places.append((root / "unified" / relative / "cpu.stat", "usage_usec", 1e6))
    for path, key, per_second in places:
        value = read_number(path, key)
        if value is not None:
            return value / per_second
    return None


def show_units(systemctl: Systemctl, *units: str) -> list[dict[str, str]]:
    """PROPERTIES of each unit (a glob matches the loaded units), with one `systemctl show`: blocks separated by
    an empty line, timestamps as "@EPOCH"."""
    out = systemctl.run("show", "--timestamp=unix", f"--property={','.join(PROPERTIES)}", *units,
                        check=False).stdout
    blocks, block = [], {}
    for line in out.splitlines() + [""]:
        if not line.strip():
            if block:
                blocks.append(block)
            block = {}
        elif "=" in line:
            key, value = line.split("=", 1)
            block[key] = value
    return blocks


def account_of(user_property: str) -> tuple[str, str]:
    """The unit's User= (a uid as systemdspawner gives it, or a name) as the account's name and its primary
    group's name, as the machine knows them now ("" for what it does not know)."""
    try:
        account = pwd.getpwuid(int(user_property)) if user_property.isdigit() else pwd.getpwnam(user_property)
    except (KeyError, ValueError):
        return user_property, ""
    try:
        group = grp.getgrgid(account.pw_gid).gr_name
    except KeyError:
        group = str(account.pw_gid)
    return account.pw_name, group


def server_of(unit: str, environment: dict[str, str]) -> str:
    if SERVER_ENV in environment:
        return environment[SERVER_ENV]
    return "" if unit.endswith("-singleuser.service") else unit.split("-", 2)[-1].removesuffix(".service")


def unit_start(props: dict[str, str]) -> float | None:
    return timestamp(props.get("ActiveEnterTimestamp", "")) or timestamp(props.get("ExecMainStartTimestamp", ""))


# --- the files

class LedgerUnreadable(BarehubError):
    """The ledger is root's (0700): a --hub-user hub, which runs no local servers, cannot read it
    (barehub.usage_sources then counts its Slurm jobs alone)."""


class Ledger:
    """records/usage: the month files, the running units' sample files, and the lock that orders their writers."""

    def __init__(self, paths: Paths):
        self.dir = paths.usage_dir
        self.running = self.dir / "running"
        self.lock_path = self.dir / ".lock"

    def month_file(self, when: float) -> Path:
        return self.dir / f"{datetime.fromtimestamp(when, timezone.utc):%Y-%m}.jsonl"

    def sample_file(self, unit: str) -> Path:
        return self.running / f"{unit}.json"

    def ensure_dirs(self) -> None:
        """records/usage and its running/, 0700 root (records/ itself is made by the installer's layout)."""
        for path in (self.dir, self.running):
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            if path.is_symlink() or not path.is_dir():
                raise BarehubError(f"{path} is a link or not a directory: root does not follow it",
                                   hint="remove it (and find out who put it there)")

    def lock(self, shared: bool = False, wait: float = LOCK_WAIT_S) -> int:
        """The ledger's lock, held until the descriptor is closed; waits at most `wait` seconds. A reader opens it
        read-only (flock needs no more): the hub reads usage from a read-only file system (ProtectSystem=strict)."""
        fd = open_no_follow(self.lock_path, os.O_RDONLY if shared else os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
                return fd
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    os.close(fd)
                    raise BarehubError(f"the usage ledger's lock {self.lock_path} was not free within {wait:.0f} s",
                                       hint="see: journalctl -u barehub-usage.service") from None
                time.sleep(0.05)

    def append(self, session: Session) -> Path:
        """One line, written with one write() to a file opened O_APPEND: another writer's line never interleaves
        with it. A torn last line (a crash mid-write) is ended first, in the same write, so this one stays whole."""
        path = self.month_file(session.end if session.end is not None else time.time())
        line = (json.dumps({**asdict(session), "format": FORMAT}, separators=(",", ":")) + "\n").encode()
        fd = open_no_follow(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line
            os.fchmod(fd, 0o600)
            if os.write(fd, line) != len(line):
                raise BarehubError(f"a short write to {path}", hint="is the disk full?")
            os.fsync(fd)
        finally:
            os.close(fd)
        return path

    def read_month(self, path: Path) -> list[dict]:
        """The lines of one month file; a torn or foreign line is skipped."""
        try:
            fd = open_no_follow(path)
        except FileNotFoundError:
            return []
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        records = []
        for raw in data.split(b"\n"):
            if not raw:
                continue
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("format") == FORMAT:
                records.append(record)
        return records

    def read_sample(self, path: Path) -> dict | None:
        try:
            fd = open_no_follow(path)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as f:
            try:
                data = json.loads(f.read())
            except ValueError:
                return None
        return data if isinstance(data, dict) else None

    def samples(self) -> dict[str, dict]:
        """Each sample file's content, by unit."""
        try:
            names = sorted(os.listdir(self.running))
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            if name.endswith(".json") and not name.startswith("."):
                data = self.read_sample(self.running / name)
                if data is not None:
                    found[name.removesuffix(".json")] = data
        return found

    def write_sample(self, unit: str, sample: dict) -> None:
        atomic_write(self.sample_file(unit), FileSpec(json.dumps(sample, sort_keys=True) + "\n", 0o600))

    def remove_sample(self, unit: str) -> None:
        try:
            os.unlink(self.sample_file(unit))
        except FileNotFoundError:
            pass


def session_of(record: dict) -> Session | None:
    try:
        return Session(**{name: record[name] for name in SESSION_FIELDS if name in record})
    except TypeError:
        return None


# --- the running units' figures

def sample_of(props: dict[str, str], previous: dict | None, now: float, root: Path = CGROUP_ROOT) -> dict:
    """A running unit's sample file after one more reading of its memory (a new file for a new invocation)."""
    unit, invocation = props.get("Id", ""), props.get("InvocationID", "")
    if not previous or previous.get("invocation") != invocation:
        user, group = account_of(props.get("User", ""))
        environment = unit_environment(props.get("Environment", ""))
        previous = {"unit": unit, "invocation": invocation, "user": user, "group": group,
                    "profile": environment.get(PROFILE_ENV, ""), "server": server_of(unit, environment),
                    "start": unit_start(props) or now, "samples": 0, "mem_sum_bytes": 0, "mem_peak_bytes": 0,
                    "cpu_s": 0.0, "last_at": now}
    sample = dict(previous)
    memory = counter(props.get("MemoryCurrent", ""))
    if memory is not None:
        sample["samples"] += 1
        sample["mem_sum_bytes"] += memory
        sample["mem_peak_bytes"] = max(sample["mem_peak_bytes"], memory)
    peak = peak_memory(props.get("ControlGroup", ""), root)
    if peak is not None:
        sample["mem_peak_bytes"] = max(sample["mem_peak_bytes"], peak)
    cpu = cpu_seconds(props, root)
    if cpu is not None:
        sample["cpu_s"] = max(sample["cpu_s"], cpu)
    sample["last_at"] = now
    return sample


def ended_from_sample(sample: dict, end: float | None, cpu_s: float | None = None, memory_now: int | None = None,
                      peak: int | None = None, note: str = "") -> Session:
    """The session of a sample file: ended at `end` with the figures given (at the stop), or as of its last
    sample; None `end` is a session still running."""
    samples, mem_sum = sample.get("samples", 0), sample.get("mem_sum_bytes", 0)
    if samples:
        average = mem_sum // samples
    elif memory_now is not None:
        average, note = memory_now, note or ONE_READING
    else:
        average = None
    peaks = [value for value in (sample.get("mem_peak_bytes") or None, peak, memory_now) if value is not None]
    return Session(source="local", id=f"{sample.get('unit', '')}@{sample.get('invocation', '')}",
                   user=sample.get("user", ""), group=sample.get("group", ""), profile=sample.get("profile", ""),
                   start=float(sample.get("start", 0.0)), end=end,
                   cpu_s=cpu_s if cpu_s is not None else float(sample.get("cpu_s", 0.0)),
                   mem_peak_bytes=max(peaks) if peaks else None, mem_avg_bytes=average,
                   server=sample.get("server", ""), note=note)


# --- the commands systemd runs

def own_cpu_s() -> float:
    """This process's CPU time and its waited-for children's (systemctl): charged to the unit's cgroup too."""
    return sum(os.times()[:4])


def record_stop(paths: Paths, systemctl: Systemctl, proc_cgroup: str, now: float,
                root: Path = CGROUP_ROOT, own_cpu=lambda: 0.0) -> Session:
    """ExecStopPost of a server unit: its session, from one `systemctl show` of its own unit and its cgroup's
    peak, merged with its sample file, appended to the ledger.

    systemd runs ExecStopPost after the server's processes are gone, with the unit's cgroup still there, so
    CPUUsageNSec is the whole session's. It also counts this command's own CPU so far (`own_cpu`: its start-up
    and the systemctl it ran), which is taken off, as read right after the counter: the session is the server's.
    Measured on systemd 252 (tests/integration/test_usage.py): the counter is still there in ExecStopPost; the
    record's own CPU was 0.09 s; a server that spun 10.3 s was recorded with 16.61 s against 15.8 s its cgroup
    said just before the stop (+5 %: the server's shut-down).
    """
    unit = unit_of_cgroup(proc_cgroup)
    shown = show_units(systemctl, unit)
    props = shown[0] if shown else {"Id": unit}
    cpu = cpu_seconds(props, root)
    cpu = max(0.0, cpu - own_cpu()) if cpu is not None else None
    ledger = Ledger(paths)
    ledger.ensure_dirs()
    lock = ledger.lock()
    try:
        previous = ledger.read_sample(ledger.sample_file(unit))
        if previous is not None and previous.get("invocation") != props.get("InvocationID"):
            # an earlier run of this unit that ended unobserved (a power loss) and was not yet written down
            ledger.append(ended_from_sample(previous, float(previous.get("last_at", now)), note=UNOBSERVED))
            previous = None
        base = sample_of({**props, "MemoryCurrent": ""}, previous, now, root)  # the stop's memory is no sample
        session = ended_from_sample(base, now, cpu,
                                    counter(props.get("MemoryCurrent", "")),
                                    peak_memory(props.get("ControlGroup", ""), root))
        ledger.append(session)
        ledger.remove_sample(unit)
    finally:
        os.close(lock)
    return session


def server_units(systemctl: Systemctl) -> list[dict[str, str]]:
    """Every loaded server unit of the users' slice with its PROPERTIES (one systemctl call)."""
    return [props for props in show_units(systemctl, USER_UNITS_GLOB)
            if props.get("Slice") == USERS_SLICE and props.get("InvocationID")]


def sample(paths: Paths, systemctl: Systemctl, now: float, root: Path = CGROUP_ROOT) -> list[Session]:
    """The timer's run: one more memory reading of every running server unit; a sample file whose invocation
    no longer runs (ExecStopPost never ran: a power loss, a unit of an earlier release) is written to the ledger
    as of its last sample. Returns the sessions so written."""
    ledger = Ledger(paths)
    ledger.ensure_dirs()
    lock = ledger.lock()
    try:
        live = {props["Id"]: props for props in server_units(systemctl) if props.get("ActiveState") in LIVE}
        samples = ledger.samples()
        written = []
        for unit, data in list(samples.items()):  # first: a unit started anew after a power loss reuses the file's name
            if unit in live and live[unit].get("InvocationID") == data.get("invocation"):
                continue
            session = ended_from_sample(data, float(data.get("last_at", now)), note=UNOBSERVED)
            ledger.append(session)
            written.append(session)
            ledger.remove_sample(unit)
            samples.pop(unit)
        for unit, props in live.items():
            if props.get("ActiveState") == "active":  # a deactivating one is its ExecStopPost's to write
                ledger.write_sample(unit, sample_of(props, samples.get(unit), now, root))
    finally:
        os.close(lock)
    return written


# --- reading

def months(since: float, until: float) -> list[str]:
    """"YYYY-MM" of each month from the one holding `since` to the one holding `until`."""
    first = datetime.fromtimestamp(since, timezone.utc).replace(day=1)
    last = datetime.fromtimestamp(max(since, until), timezone.utc)
    found, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        found.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def overlaps(start: float, end: float | None, window: Window, now: float) -> bool:
    end = now if end is None else end
    return start < window.until and end >= window.since


def sessions(paths: Paths, window: Window, now: float, systemctl: Systemctl | None = None,
             root: Path = CGROUP_ROOT, from_samples: bool = False) -> list[Session]:
    """Every local session that overlaps the window: the ended ones from the ledger (a session is filed by the
    month of its end, so the months from the window's start to now are read), the running ones live (one
    systemctl call, with their sample files), and any whose sample file the sampler has not yet written down.

    `from_samples` (the hub's book, gathered every minute): a running session's figures are its sample file's, as
    of the sampler's last pass (at most a minute old, as the book itself is); systemd is asked only which units
    run (one `list-units`) and, for a unit started since the last pass, its own figures. A `systemctl show` of
    every unit was most of the book's cost: with 200 running servers 0.19 s of systemctl's CPU (and systemd's),
    against 0.05 s for the rest of the gathering, each minute, in the hub's cgroup (bench/polling-results.md).

    Reads the ledger only (no write), under its shared lock, so no session is seen twice or missed while a
    server stops meanwhile. Needs root (records/usage is 0700). Plain json.loads per line: see bench/."""
    ledger = Ledger(paths)
    if not ledger.dir.exists():
        return []
    try:
        lock = ledger.lock(shared=True)
    except FileNotFoundError:  # nothing was ever written
        lock = None
    except PermissionError:
        raise LedgerUnreadable(f"cannot read the usage ledger {ledger.dir} (root's)", hint="run as root") from None
    systemctl = systemctl or Systemctl(timeout=30)
    try:
        found, seen = [], set()
        for month in months(window.since, now):
            for record in ledger.read_month(ledger.dir / f"{month}.jsonl"):
                seen.add(record.get("id"))
                if not overlaps(record.get("start", 0.0), record.get("end"), window, now):
                    continue
                session = session_of(record)
                if session is not None:
                    found.append(session)
        samples = ledger.samples()
        if from_samples:
            running = live_sampled(systemctl, samples, now, root)
        else:
            running = {props["Id"]: sample_of(props, samples.get(props["Id"]), now, root)
                       for props in server_units(systemctl) if props.get("ActiveState") in LIVE}
    finally:
        if lock is not None:
            os.close(lock)
    for current in running.values():
        session = ended_from_sample(current, None)
        if session.id not in seen and overlaps(session.start, None, window, now):
            found.append(session)
    for unit, data in samples.items():
        if unit in running and running[unit].get("invocation") == data.get("invocation"):
            continue
        session = ended_from_sample(data, float(data.get("last_at", now)), note=UNOBSERVED)
        if session.id not in seen and overlaps(session.start, session.end, window, now):
            found.append(session)
    return found


def live_sampled(systemctl: Systemctl, samples: dict[str, dict], now: float,
                 root: Path = CGROUP_ROOT) -> dict[str, dict]:
    """{unit: sample} of the running server units: from one `list-units`, with each unit's sample file; a unit
    without one (started since the sampler's last pass) from a `systemctl show` of those units alone."""
    states = systemctl.listed_states(USER_UNITS_GLOB)
    live = [unit for unit, state in states.items() if state.get("ActiveState") in LIVE]
    running = {unit: samples[unit] for unit in live if unit in samples}
    unsampled = [unit for unit in live if unit not in samples]
    for props in show_units(systemctl, *unsampled) if unsampled else []:
        if props.get("Slice") == USERS_SLICE and props.get("InvocationID") and props.get("ActiveState") in LIVE:
            running[props["Id"]] = sample_of(props, None, now, root)
    return running


def main(argv: list[str]) -> int:
    """`python -m barehub.usage_ledger stop|sample [--prefix PREFIX]`, run by systemd (the unit's ExecStopPost,
    barehub-usage.service); prints a line for the journal."""
    from barehub.base.paths import prefix_of_env
    if not argv or argv[0] not in ("stop", "sample"):
        print("usage: python -m barehub.usage_ledger stop|sample [--prefix PREFIX]", file=sys.stderr)
        return 2
    prefix = argv[argv.index("--prefix") + 1] if "--prefix" in argv else prefix_of_env()
    if prefix is None:
        print("usage_ledger: not an install's env; give --prefix", file=sys.stderr)
        return 2
    paths = Paths.from_prefix(prefix)
    try:
        if argv[0] == "stop":
            with open("/proc/self/cgroup") as f:
                session = record_stop(paths, Systemctl(timeout=30), f.read(), time.time(), own_cpu=own_cpu_s)
            print(f"usage: {session.id} of {session.user}: {session.cpu_s:.2f} s CPU "
                  f"(this record's own {own_cpu_s():.2f} s not counted), "
                  f"peak {session.mem_peak_bytes} B, over {session.wall_s(time.time()):.0f} s")
        else:
            for session in sample(paths, Systemctl(timeout=30), time.time()):
                print(f"usage: {session.id} of {session.user} ended unobserved; written as of its last sample")
    except BarehubError as e:
        print(f"usage_ledger {argv[0]}: {e.message}" + (f" ({e.hint})" if e.hint else ""), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
