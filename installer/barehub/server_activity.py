"""Whether a server is working, told to the hub: a jupyter-server extension that looks every CHECK_S seconds at
the server's kernels and CPU, and POSTs {JUPYTERHUB_API_URL}/users/{user}/work
{"server": name, "busy": "kernel" | "cpu" | null, "busy_since": ISO-8601 UTC or null, and when idle, maybe
"last_activity": ISO-8601 UTC, the user's own activity (see ServerActivity)}, answered
{"report_every_s": int, "cpu_active_percent": number} (barehub.sessions' work API).

Why. The idle culler stops a server whose last activity is older than its timeout, and the hub's last_activity
only moves on messages and requests: a kernel computing silently (a training loop, `time.sleep(300)` in a cell)
sends nothing, so hours of work are culled as idle. The server itself knows better: its kernel manager keeps each
kernel's execution_state from the kernels' status messages, and its CPU use can be read from its own cgroup or
process tree. So this extension, in every user's server, says when it is working:
- on its own: web_app.settings["barehub_work_last_activity"] is moved to now at each check while working, and
  jupyter-server's last_activity() counts every setting named *_last_activity, so jupyterhub-singleuser's own
  activity reports (and a plain `jupyter lab`'s /api/status) carry it;
- to the hub: at start, at once when what it is busy with changes, and every report_every_s while working, with
  the start of the current working spell (busy_since), so the hub moves last_activity and the culler can cap
  busy time (barehub.culling): a runaway loop does not hold a node for ever.
Why the server tells rather than the hub asking every server's /api/kernels: an idle server costs the hub no
request, one mechanism serves local units and Slurm jobs on nodes the hub cannot reach, and the kernel manager
already knows each kernel's state.

Working, at a check: a kernel is busy ("kernel", wins), or the server used at least cpu_active_percent of one CPU
since the previous check ("cpu": a computation in a subprocess, a terminal, a kernel that says idle while its
threads run). CPU is read from the server's own cgroup when it has one: a local server's systemd unit
(".service"), a Slurm job's job_<id> (all its steps). A shared cgroup (the root, a slice, a login session's scope)
would count other people's processes and is never used: the server's process tree (psutil) is then. (The tree
misses work detached from it, a `nohup` whose terminal closed, re-parented to init; a cgroup does not.)
The hub's answer sets report_every_s and cpu_active_percent (the site's policy), defaults until it has answered.
The server is named in the body, not the URL (as in JupyterHub's activity API): the default server's empty name
would make .../sessions//work, and traefik, between a Slurm job and the hub, merges the two slashes.

- A hub that does not answer (restarting, unreachable, an error): no error, the state is kept and told at the
  next check; one warning per failing spell. One request at a time.
- No JUPYTERHUB_API_URL/TOKEN/USER (a plain `jupyter lab`): the local activity only, no hub is asked.
- Cheap: no subprocess; a check reads a file or two (or psutil's per process) and the kernels' states in memory.
Enabled for every server of the environment by jupyter-config/jupyter_server_config.d/barehub.json.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import psutil
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.ioloop import PeriodicCallback

from barehub.session_clock import _ssl_options
from barehub.server_work import SERVER_UNIT_ENV
from barehub.utc_time import iso

CHECK_S = 5  # seconds between two looks at the kernels and the CPU
HUB_TIMEOUT = 10  # seconds for one hub answer
DEFAULT_REPORT_EVERY_S = 60  # until the hub has said otherwise
DEFAULT_CPU_ACTIVE_PERCENT = 10.0  # percent of one CPU
SLACK_S = 0.5  # a check a little early (the loop's timing) still sends the report due
SETTINGS_KEY = "barehub_work_last_activity"  # ends in _last_activity: jupyter-server's last_activity() counts it

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ what working is

class WorkState:
    """What the server is busy with ("kernel", "cpu" or None) and since when (epoch seconds) it has been working
    without a pause."""

    def __init__(self) -> None:
        self.busy: str | None = None
        self.busy_since: float | None = None

    def observe(self, now: float, kernel_busy: bool, cpu_percent: float | None,
                cpu_active_percent: float = DEFAULT_CPU_ACTIVE_PERCENT) -> bool:
        """One check at `now` (epoch seconds); cpu_percent None when unknown (no earlier reading, a failed one).
        True when `busy` changed."""
        if kernel_busy:
            busy = "kernel"
        elif cpu_percent is not None and cpu_percent >= cpu_active_percent:
            busy = "cpu"
        else:
            busy = None
        changed = busy != self.busy
        if busy is None:
            self.busy_since = None
        elif self.busy is None:  # a spell begins; kernel -> cpu is the same spell going on
            self.busy_since = now
        self.busy = busy
        return changed

    def as_report(self) -> dict:
        return {"busy_since": None if self.busy_since is None else iso(self.busy_since), "busy": self.busy}


def cpu_percent(cpu_before: float, cpu_after: float, seconds: float) -> float | None:
    """Percent of one CPU used between two readings of CPU seconds `seconds` apart; None when no time passed.
    A reading that went down (a process gone with its time) counts as nothing used."""
    if seconds <= 0:
        return None
    return max(0.0, cpu_after - cpu_before) / seconds * 100.0


def kernels_busy(kernel_manager) -> bool:
    """Whether any kernel of the server is busy, as jupyter-server's MappingKernelManager knows it from the
    kernels' IOPub status messages (execution_state)."""
    if kernel_manager is None:
        return False
    for kernel_id in list(kernel_manager.list_kernel_ids()):
        try:
            kernel = kernel_manager.get_kernel(kernel_id)
        except Exception:  # shut down between the two calls
            continue
        if getattr(kernel, "execution_state", None) == "busy":
            return True
    return False


# ------------------------------------------------------------------------------------------ CPU seconds

def own_cgroup(path: str, env) -> str | None:
    """The cgroup (a path in the hierarchy) that is this server's own, from the one its process is in; None when
    that one is shared with others. A Slurm job: its job_<SLURM_JOB_ID> directory (every step of the job), and
    nothing else (without Slurm's cgroup plugin the job is in slurmd's .service, every job of the node). A local
    server: its own systemd unit, named by barehub's spawner in SERVER_UNIT_ENV, and no other .service (a spawner
    that runs servers inside the hub's unit would count the hub's and every user's CPU)."""
    parts = path.rstrip("/").split("/")
    job_id = env.get("SLURM_JOB_ID")
    if job_id:
        job = f"job_{job_id}"
        return "/".join(parts[:parts.index(job) + 1]) if job in parts else None
    unit = env.get(SERVER_UNIT_ENV)
    return path.rstrip("/") if unit and parts[-1] == unit else None


def _mounts(root: Path) -> list[tuple[str, str, str, set[str]]]:
    """(fstype, root in the hierarchy, mount point, super options) of each cgroup mount in /proc/self/mountinfo."""
    mounts = []
    try:
        lines = (root / "proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return mounts
    for line in lines:
        mine, sep, theirs = line.partition(" - ")
        fields, fs = mine.split(), theirs.split()
        if sep and len(fields) >= 5 and len(fs) >= 3 and fs[0] in ("cgroup", "cgroup2"):
            mounts.append((fs[0], fields[3], fields[4], set(fs[2].split(","))))
    return mounts


def _under(mount_root: str, mount_point: str, path: str, root: Path) -> Path:
    """The directory of cgroup `path` under a mount of the hierarchy from `mount_root`."""
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root):]
    return root / mount_point.lstrip("/") / path.lstrip("/")


def _cgroup_counters(root: Path, env) -> list[tuple[str, Callable[[], float]]]:
    """(the server's own cgroup, a reader of its CPU seconds so far) for each hierarchy that has it: cgroup v1's
    cpuacct first (where it exists it has the CPU accounting), then v2's."""
    try:
        lines = (root / "proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    mounts = _mounts(root)
    counters = []
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "cpuacct" in controllers.split(","):  # v1: "4:cpu,cpuacct:/jupyterhub-users.slice/jupyter-kim.service"
            own = own_cgroup(path, env)
            if own is None:
                continue
            places = [_under(mroot, point, own, root) for fstype, mroot, point, options in mounts
                      if fstype == "cgroup" and "cpuacct" in options]
            places += [root / "sys/fs/cgroup" / name / own.lstrip("/") for name in ("cpu,cpuacct", "cpuacct")]
            for place in places:
                counters.append((own, lambda file=place / "cpuacct.usage": int(file.read_text()) / 1e9))
    for line in lines:
        if line.startswith("0::"):  # v2: "0::/system.slice/slurmstepd.scope/job_42/step_batch/user/task_0"
            own = own_cgroup(line[3:], env)
            if own is None:
                continue
            places = [_under(mroot, point, own, root) for fstype, mroot, point, _ in mounts if fstype == "cgroup2"]
            places += [root / "sys/fs/cgroup" / own.lstrip("/")]
            for place in places:
                counters.append((own, lambda file=place / "cpu.stat": _usage_usec(file) / 1e6))
    return counters


def _usage_usec(file: Path) -> int:
    for line in file.read_text().splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value)
    raise ValueError(f"no usage_usec in {file}")


def process_tree_seconds(process: psutil.Process | None = None) -> Callable[[], float]:
    """A reader of the CPU seconds used so far by a process and its descendants. Each process counts with its
    reaped children (children_user/system), so a subprocess that ends moves its time to its parent's count
    instead of losing it; a process gone between two calls is skipped."""
    me = process or psutil.Process()

    def read() -> float:
        total = 0.0
        for proc in [me, *me.children(recursive=True)]:
            try:
                times = proc.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            total += times.user + times.system + times.children_user + times.children_system
        return total

    return read


def cpu_source(env=os.environ, root: Path | str = "/") -> tuple[Callable[[], float], str]:
    """Where the server's CPU use is read: its own cgroup when it has one ("cgroup /path"), otherwise its process
    tree ("process tree"). `root`: where /proc and /sys are (a fake tree in tests)."""
    for own, read in _cgroup_counters(Path(root), env):
        try:
            read()
        except (OSError, ValueError):
            continue
        return read, f"cgroup {own}"
    return process_tree_seconds(), "process tree"


# ------------------------------------------------------------------------------------------ the hub

def hub_work_url(env) -> str | None:
    """The hub's URL for this server's work reports; None when no hub started the server."""
    api_url, user = env.get("JUPYTERHUB_API_URL"), env.get("JUPYTERHUB_USER")
    if not api_url or not user or not env.get("JUPYTERHUB_API_TOKEN"):
        return None
    return f"{api_url.rstrip('/')}/users/{quote(user, safe='')}/work"


def parse_answer(body: bytes) -> dict:
    """The settings in the hub's answer {"report_every_s": int >= 1, "cpu_active_percent": number >= 0}, those it
    has; ValueError when it is not such an answer."""
    if not body.strip():
        return {}
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"not an object: {data!r}")
    settings = {}
    if "report_every_s" in data:
        every = data["report_every_s"]
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"report_every_s {every!r}")
        settings["report_every_s"] = every
    if "cpu_active_percent" in data:
        percent = data["cpu_active_percent"]
        if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent) \
                or percent < 0:
            raise ValueError(f"cpu_active_percent {percent!r}")
        settings["cpu_active_percent"] = float(percent)
    return settings


class HubReporter:
    """Tells the hub what the server is busy with; keeps the settings the hub answers."""

    def __init__(self, env=os.environ, logger: logging.Logger = log):
        self.log = logger
        self.url = hub_work_url(env)
        self.server_name = env.get("JUPYTERHUB_SERVER_NAME") or ""
        self.token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.ssl = _ssl_options(env) if self.url and self.url.startswith("https:") else None
        self.report_every_s: int = DEFAULT_REPORT_EVERY_S
        self.cpu_active_percent: float = DEFAULT_CPU_ACTIVE_PERCENT
        self.failing = False
        self.bad_answer = False
        self.refused = False

    async def send(self, report: dict) -> bool:
        """POST one report (WorkState.as_report()); True when the hub took it. Never raises."""
        try:
            request = HTTPRequest(self.url, method="POST", body=json.dumps({"server": self.server_name, **report}),
                                  headers={"Authorization": f"token {self.token}",
                                           "Content-Type": "application/json"},
                                  connect_timeout=HUB_TIMEOUT, request_timeout=HUB_TIMEOUT, ssl_options=self.ssl,
                                  follow_redirects=False)
            response = await AsyncHTTPClient().fetch(request)
        except HTTPClientError as e:
            if e.code is not None and 400 <= e.code < 500 and e.code != 429:
                # refused for good (a server the hub thinks stopped, a token it no longer takes): told again only
                # with the next change or heartbeat, not every CHECK_S
                self.log.log(logging.DEBUG if self.refused else logging.WARNING,
                             "barehub server activity: the hub refused the report (%s): %s", self.url, e)
                self.refused = True
                return True
            return self._failed(e)
        except Exception as e:  # down, unreachable, refused: told again at the next check
            return self._failed(e)
        self.refused = False
        if self.failing:
            self.log.info("barehub server activity: the hub answers again")
        self.failing = False
        try:
            settings = parse_answer(response.body)
        except Exception as e:  # the report was taken; the settings are kept
            self.log.log(logging.DEBUG if self.bad_answer else logging.WARNING,
                         "barehub server activity: the hub's answer is not one (%s), keeping report_every_s %s and "
                         "cpu_active_percent %s: %s", self.url, self.report_every_s, self.cpu_active_percent, e)
            self.bad_answer = True
            return True
        self.bad_answer = False
        self.report_every_s = settings.get("report_every_s", self.report_every_s)
        self.cpu_active_percent = settings.get("cpu_active_percent", self.cpu_active_percent)
        return True

    def _failed(self, error: Exception) -> bool:
        # (once per failing spell at warning level: a hub down for an hour logs one line, not 720)
        self.log.log(logging.DEBUG if self.failing else logging.WARNING,
                     "barehub server activity: no answer from the hub (%s), will tell it again: %s", self.url, error)
        self.failing = True
        return False


# ------------------------------------------------------------------------------------------ the checks

class ServerActivity:
    """Every CHECK_S seconds: is the server working (WorkState), the local activity moved while it is, the hub
    told at start, on a change, and every report_every_s while working (a report not taken is sent again at the
    next check). An idle server whose user was active (jupyter-server's last_activity(): her requests, kernel
    messages) tells the hub that too, at most every report_every_s: jupyterhub-singleuser tells it only every
    300 s, which a profile's idle timeout of a few minutes would take for idleness."""

    def __init__(self, settings: dict, kernel_manager, reporter: HubReporter,
                 cpu_seconds: Callable[[], float] | None, clock=time.monotonic, wall=time.time,
                 logger: logging.Logger = log, last_activity: Callable[[], datetime | None] | None = None):
        self.log = logger
        self.last_activity = last_activity
        self.activity_told: float | None = None  # the user's last activity the hub has been told (epoch seconds)
        self.settings = settings
        self.kernel_manager = kernel_manager
        self.reporter = reporter
        self.cpu_seconds = cpu_seconds
        self.clock, self.wall = clock, wall
        self.state = WorkState()
        self.reported: dict | None = None  # the last report the hub took (None: none yet)
        self.reported_at: float | None = None  # clock() at the check that sent it
        self.sending: asyncio.Future | None = None
        self._cpu_before: tuple[float, float] | None = None  # (clock(), CPU seconds) at the previous check
        self._failing = False
        self._periodic: PeriodicCallback | None = None

    def _cpu_percent(self, now: float) -> float | None:
        if self.cpu_seconds is None:
            return None
        try:
            seconds = self.cpu_seconds()
        except Exception as e:  # a cgroup gone, a psutil error: unknown this time
            self.log.debug("barehub server activity: no CPU reading: %s", e)
            self._cpu_before = None
            return None
        before, self._cpu_before = self._cpu_before, (now, seconds)
        return None if before is None else cpu_percent(before[1], seconds, now - before[0])

    def _active(self) -> float | None:
        """The user's last activity in this server (epoch seconds), when it is not this extension's own."""
        if self.last_activity is None or self.state.busy is not None:
            return None
        try:
            moment = self.last_activity()
        except Exception:  # noqa: BLE001 (a source of activity that fails: not told this time)
            return None
        if not isinstance(moment, datetime):
            return None
        return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()

    def _due(self, now: float, report: dict, active: float | None) -> bool:
        if report != self.reported:  # the first one, or a change the hub has not taken yet
            return True
        if now - self.reported_at < self.reporter.report_every_s - SLACK_S:
            return False
        return self.state.busy is not None or (active is not None and active > (self.activity_told or 0))

    def check(self) -> asyncio.Future | None:
        """One check; the report it sends (to await in tests), if any."""
        now = self.clock()
        self.state.observe(self.wall(), kernels_busy(self.kernel_manager), self._cpu_percent(now),
                           self.reporter.cpu_active_percent)
        if self.state.busy is not None:
            self.settings[SETTINGS_KEY] = datetime.now(timezone.utc)
        report, active = self.state.as_report(), self._active()
        if self.reporter.url is None or self.sending is not None or not self._due(now, report, active):
            return None
        self.sending = asyncio.ensure_future(self._send(report, now, active))
        return self.sending

    async def _send(self, report: dict, now: float, active: float | None) -> None:
        told = {**report, "last_activity": iso(active)} if active is not None else report
        try:
            if await self.reporter.send(told):
                self.reported, self.reported_at = report, now
                self.activity_told = active if active is not None else self.activity_told
        finally:
            self.sending = None

    def _check_safely(self) -> None:
        try:
            self.check()
            self._failing = False
        except Exception:  # never stop checking
            self.log.log(logging.DEBUG if self._failing else logging.WARNING,
                         "barehub server activity: a check failed", exc_info=True)
            self._failing = True

    def start(self) -> None:
        """The first check (and report) now, then one every CHECK_S; in the running event loop."""
        self._check_safely()
        self._periodic = PeriodicCallback(self._check_safely, CHECK_S * 1000)
        self._periodic.start()


def _jupyter_server_extension_points():
    return [{"module": "barehub.server_activity"}]


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    cpu_seconds, source = cpu_source()
    kernel_manager = getattr(serverapp, "kernel_manager", None)
    if kernel_manager is None:  # (not `or`: a kernel manager with no kernels is falsy, it has a len())
        kernel_manager = web_app.settings.get("kernel_manager")
    reporter = HubReporter(logger=serverapp.log)  # the server's log (its journal), where its own lines are
    web_app.settings["barehub_server_activity"] = ServerActivity(web_app.settings, kernel_manager, reporter,
                                                                 cpu_seconds, logger=serverapp.log,
                                                                 last_activity=web_app.last_activity)
    serverapp.log.info("barehub server activity: CPU from the %s, %s", source,
                       f"reports to {reporter.url}" if reporter.url else "no hub to report to")


async def _start_jupyter_server_extension(serverapp) -> None:
    serverapp.web_app.settings["barehub_server_activity"].start()
