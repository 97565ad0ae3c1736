"""A server says when it is working (barehub.server_activity), so that a kernel computing in silence is not culled.

What working is (a busy kernel, CPU used by the server's own cgroup or process tree), read from fake /proc and
/sys trees for the cgroup layouts a server meets (cgroup v1 and v2, a local systemd unit, a Slurm job) and those it
must refuse (shared cgroups); the reports to a stand-in hub (conftest's hub_api_server) as the checks go; then a
real jupyter-server, enabled by the env's config file, with a real kernel sleeping in a cell.
"""
from __future__ import annotations

import asyncio
import http.server
import json
import logging
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import requests

from barehub import server_activity
from barehub.server_activity import (CHECK_S, DEFAULT_CPU_ACTIVE_PERCENT, DEFAULT_REPORT_EVERY_S, SETTINGS_KEY,
                                     HubReporter, ServerActivity, WorkState, cpu_percent, cpu_source,
                                     kernels_busy, own_cgroup, process_tree_seconds)

from barehub.server_work import SERVER_UNIT_ENV
from barehub.utc_time import iso
from tests.unit.conftest import SERVER_AUTH, SERVER_CONFIG, start_jupyter_server
REPO = Path(__file__).resolve().parents[2]
WORK_PATH = "/hub/api/users/kim/work"
START = 1_700_000_000.0  # epoch seconds at the first check of the tests' wall clock
IDLE = {"busy_since": None, "busy": None}


def busy(kind: str, since: float = START) -> dict:
    return {"busy_since": datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "busy": kind}


# ------------------------------------------------------------------------------------------ what working is

def test_a_busy_kernel_is_work_since_the_check_that_first_saw_it():
    state = WorkState()
    assert state.observe(START, False, None) is False and (state.busy, state.busy_since) == (None, None)
    assert state.observe(START + 5, True, 0.0) is True
    assert (state.busy, state.busy_since) == ("kernel", START + 5)
    assert state.observe(START + 10, True, 0.0) is False  # the same spell: busy_since kept
    assert state.observe(START + 15, True, None) is False
    assert (state.busy, state.busy_since) == ("kernel", START + 5)
    assert state.as_report() == busy("kernel", START + 5)


def test_idle_kernels_and_an_idle_cpu_are_not_work():
    state = WorkState()
    state.observe(START, True, 0.0)
    assert state.observe(START + 5, False, 0.5) is True
    assert (state.busy, state.busy_since) == (None, None)
    assert state.as_report() == IDLE
    state.observe(START + 10, True, 0.0)  # a new spell starts afresh
    assert state.busy_since == START + 10


@pytest.mark.parametrize("percent, threshold, expected", [
    (None, 10.0, None),  # no reading yet, or a failed one
    (0.0, 10.0, None),
    (9.9, 10.0, None),
    (10.0, 10.0, "cpu"),  # at the threshold
    (250.0, 10.0, "cpu"),  # several CPUs
    (30.0, 50.0, None),  # the hub's threshold
    (0.0, 0.0, "cpu"),
])
def test_cpu_in_use_is_work(percent, threshold, expected):
    state = WorkState()
    state.observe(START, False, percent, threshold)
    assert state.busy == expected
    assert state.busy_since == (START if expected else None)


def test_a_busy_kernel_wins_and_kernel_then_cpu_is_one_spell():
    state = WorkState()
    state.observe(START, True, 90.0)
    assert state.busy == "kernel"
    assert state.observe(START + 5, False, 90.0) is True  # the cell ended, its subprocess goes on
    assert (state.busy, state.busy_since) == ("cpu", START)
    assert state.observe(START + 10, True, 0.0) is True
    assert (state.busy, state.busy_since) == ("kernel", START)


def test_cpu_percent_of_one_cpu():
    assert cpu_percent(10.0, 10.5, 5.0) == pytest.approx(10.0)
    assert cpu_percent(10.0, 20.0, 5.0) == pytest.approx(200.0)
    assert cpu_percent(10.0, 4.0, 5.0) == 0.0  # a process gone with its time: nothing used
    assert cpu_percent(10.0, 11.0, 0.0) is None


class Kernels:
    """A stand-in for jupyter-server's MappingKernelManager: the public API the extension uses."""
    def __init__(self, **states: str):
        self.kernels = {kid: SimpleNamespace(execution_state=state) for kid, state in states.items()}
        self.vanishing: set[str] = set()

    def list_kernel_ids(self) -> list[str]:
        return list(self.kernels) + list(self.vanishing)

    def get_kernel(self, kernel_id: str):
        return self.kernels[kernel_id]  # KeyError for one shut down meanwhile


def test_any_busy_kernel_of_the_server():
    assert kernels_busy(Kernels(a="idle", b="busy")) is True
    assert kernels_busy(Kernels(a="idle", b="starting", c="dead")) is False
    assert kernels_busy(Kernels()) is False
    assert kernels_busy(None) is False
    kernels = Kernels(a="idle")
    kernels.vanishing.add("gone")
    assert kernels_busy(kernels) is False


def test_jupyter_servers_kernel_manager_has_the_attributes_used():
    from jupyter_server.services.kernels.kernelmanager import MappingKernelManager, ServerKernelManager

    assert "execution_state" in ServerKernelManager.class_trait_names()
    assert callable(MappingKernelManager.list_kernel_ids) and callable(MappingKernelManager.get_kernel)


# ------------------------------------------------------------------------------------------ where CPU is read

V1_MOUNTS = """\
25 1 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
31 25 0:27 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
34 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
35 25 0:31 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,memory
"""
V1_SPLIT_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V2_MOUNTS = "29 1 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
UNIT = "/jupyterhub-users.slice/jupyter-kim-singleuser.service"
MINE = {SERVER_UNIT_ENV: "jupyter-kim-singleuser.service"}  # as barehub's LocalSpawner names the server's unit
KIMS = {SERVER_UNIT_ENV: "jupyter-kim.service"}


def fake_root(tmp_path: Path, cgroup: str, mountinfo: str, files: dict[str, str]) -> Path:
    """/proc/self/{cgroup,mountinfo} and cgroup files under tmp_path, as a server's machine has them."""
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text(cgroup)
    (tmp_path / "proc" / "self" / "mountinfo").write_text(mountinfo)
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


OWN = {
    "v1 local unit (cpu,cpuacct; hybrid)": (
        MINE, f"12:memory:{UNIT}\n4:cpu,cpuacct:{UNIT}\n1:name=systemd:{UNIT}\n0::{UNIT}\n", V1_MOUNTS,
        {f"sys/fs/cgroup/cpu,cpuacct{UNIT}/cpuacct.usage": "2500000000\n",
         f"sys/fs/cgroup/unified{UNIT}/cpu.stat": "usage_usec 9000000\n"},  # v1 has the accounting: first
        UNIT, "sys/fs/cgroup/cpu,cpuacct" + UNIT + "/cpuacct.usage"),
    "v1 cpu and cpuacct mounted apart": (
        MINE, f"2:cpuacct:{UNIT}\n1:cpu:{UNIT}\n0::/\n", V1_SPLIT_MOUNTS,
        {f"sys/fs/cgroup/cpuacct{UNIT}/cpuacct.usage": "2500000000\n"},
        UNIT, "sys/fs/cgroup/cpuacct" + UNIT + "/cpuacct.usage"),
    "v1 with no mountinfo": (
        MINE, f"4:cpuacct,cpu:{UNIT}\n", "",
        {f"sys/fs/cgroup/cpu,cpuacct{UNIT}/cpuacct.usage": "2500000000\n"},
        UNIT, "sys/fs/cgroup/cpu,cpuacct" + UNIT + "/cpuacct.usage"),
    "v1 in a container seeing the host's paths": (
        KIMS, "4:cpu,cpuacct:/docker/abc/system.slice/jupyter-kim.service\n",
        "34 25 0:30 /docker/abc /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        {"sys/fs/cgroup/cpu,cpuacct/system.slice/jupyter-kim.service/cpuacct.usage": "2500000000\n"},
        "/docker/abc/system.slice/jupyter-kim.service",
        "sys/fs/cgroup/cpu,cpuacct/system.slice/jupyter-kim.service/cpuacct.usage"),
    "v2 local unit": (
        MINE, f"0::{UNIT}\n", V2_MOUNTS,
        {f"sys/fs/cgroup{UNIT}/cpu.stat": "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n"},
        UNIT, "sys/fs/cgroup" + UNIT + "/cpu.stat"),
    "v1 Slurm job": (
        {"SLURM_JOB_ID": "42"}, "4:cpu,cpuacct:/slurm/uid_1000/job_42/step_batch/task_0\n", V1_MOUNTS,
        {"sys/fs/cgroup/cpu,cpuacct/slurm/uid_1000/job_42/cpuacct.usage": "2500000000\n",
         "sys/fs/cgroup/cpu,cpuacct/slurm/uid_1000/job_42/step_batch/task_0/cpuacct.usage": "1\n"},
        "/slurm/uid_1000/job_42", "sys/fs/cgroup/cpu,cpuacct/slurm/uid_1000/job_42/cpuacct.usage"),
    "v2 Slurm job": (
        {"SLURM_JOB_ID": "42"}, "0::/system.slice/slurmstepd.scope/job_42/step_batch/user/task_0\n", V2_MOUNTS,
        {"sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/cpu.stat": "usage_usec 2500000\n",
         "sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/step_batch/user/task_0/cpu.stat": "usage_usec 1\n"},
        "/system.slice/slurmstepd.scope/job_42", "sys/fs/cgroup/system.slice/slurmstepd.scope/job_42/cpu.stat"),
}


@pytest.mark.parametrize("env, cgroup, mounts, files, own, counter", OWN.values(), ids=OWN.keys())
def test_the_servers_own_cgroup(tmp_path, env, cgroup, mounts, files, own, counter):
    root = fake_root(tmp_path, cgroup, mounts, files)
    read, label = cpu_source(env, root)
    assert label == f"cgroup {own}"
    assert read() == pytest.approx(2.5)
    (root / counter).write_text("usage_usec 7500000\n" if counter.endswith("cpu.stat") else "7500000000\n")
    assert read() == pytest.approx(7.5)  # read afresh at each check


SHARED = {
    "v1 root": ({}, "4:cpu,cpuacct:/\n0::/\n", V1_MOUNTS, {"sys/fs/cgroup/cpu,cpuacct/cpuacct.usage": "1\n"}),
    "v2 root": ({}, "0::/\n", V2_MOUNTS, {"sys/fs/cgroup/cpu.stat": "usage_usec 1\n"}),
    "a slice": ({}, "0::/jupyterhub-users.slice\n", V2_MOUNTS,
                {"sys/fs/cgroup/jupyterhub-users.slice/cpu.stat": "usage_usec 1\n"}),
    "a login session": ({}, "4:cpu,cpuacct:/user.slice/user-1000.slice/session-3.scope\n", V1_MOUNTS,
                        {"sys/fs/cgroup/cpu,cpuacct/user.slice/user-1000.slice/session-3.scope/cpuacct.usage":
                         "1\n"}),
    "a Slurm job without the cgroup plugin (slurmd's unit)": (
        {"SLURM_JOB_ID": "42"}, "0::/system.slice/slurmd.service\n", V2_MOUNTS,
        {"sys/fs/cgroup/system.slice/slurmd.service/cpu.stat": "usage_usec 1\n"}),
    "another job's cgroup": (
        {"SLURM_JOB_ID": "42"}, "0::/system.slice/slurmstepd.scope/job_43/step_batch\n", V2_MOUNTS,
        {"sys/fs/cgroup/system.slice/slurmstepd.scope/job_43/cpu.stat": "usage_usec 1\n"}),
    "its own, unreadable": (MINE, f"0::{UNIT}\n", V2_MOUNTS, {}),
    "a unit, but not the one its spawner named (servers inside the hub's unit)": (
        MINE, "0::/system.slice/jupyterhub.service\n", V2_MOUNTS,
        {"sys/fs/cgroup/system.slice/jupyterhub.service/cpu.stat": "usage_usec 1\n"}),
    "a unit, and no spawner naming one": ({}, f"0::{UNIT}\n", V2_MOUNTS,
                                          {f"sys/fs/cgroup{UNIT}/cpu.stat": "usage_usec 1\n"}),
    "no /proc/self/cgroup": ({}, None, "", {}),
}


@pytest.mark.parametrize("env, cgroup, mounts, files", SHARED.values(), ids=SHARED.keys())
def test_a_shared_cgroup_is_never_used_the_process_tree_is(tmp_path, env, cgroup, mounts, files):
    root = fake_root(tmp_path, cgroup or "", mounts, files)
    if cgroup is None:
        (root / "proc" / "self" / "cgroup").unlink()
    read, label = cpu_source(env, root)
    assert label == "process tree"
    # this test's own process tree: at least this process's own CPU (a fake cgroup file here says 1 microsecond);
    # not an exact figure, as a long test run's process has children of its own that keep working
    assert read() >= sum(psutil.Process().cpu_times()[:2]) > 0.01


def test_own_cgroup():
    assert own_cgroup(UNIT, MINE) == UNIT
    gpu = {SERVER_UNIT_ENV: "jupyter-kim@gpu.service"}
    assert own_cgroup("/system.slice/jupyter-kim@gpu.service", gpu) == "/system.slice/jupyter-kim@gpu.service"
    assert own_cgroup(UNIT, {}) is None and own_cgroup("/system.slice/jupyterhub.service", MINE) is None
    assert own_cgroup("/", MINE) is None
    assert own_cgroup("/user.slice/user-1000.slice/user@1000.service/app.slice/app.scope", {}) is None
    assert own_cgroup("/slurm/job_42/step_0", {"SLURM_JOB_ID": "42"}) == "/slurm/job_42"
    assert own_cgroup("/slurm/job_420/step_0", {"SLURM_JOB_ID": "42"}) is None
    assert own_cgroup(UNIT, {"SLURM_JOB_ID": "42", **MINE}) is None  # a job is never a unit's


class FakeProcess:
    def __init__(self, user=0.0, system=0.0, children_user=0.0, children_system=0.0, children=(), gone=False):
        self.times = SimpleNamespace(user=user, system=system, children_user=children_user,
                                     children_system=children_system)
        self.kids, self.gone = list(children), gone

    def cpu_times(self):
        if self.gone:
            raise psutil.NoSuchProcess(4242)
        return self.times

    def children(self, recursive=False):
        assert recursive
        return self.kids


def test_the_process_tree_counts_every_process_and_its_reaped_children():
    kernel = FakeProcess(user=3.0, system=1.0, children_user=0.5)
    gone = FakeProcess(user=100.0, gone=True)  # ended between listing and reading
    server = FakeProcess(user=1.0, system=0.25, children_user=2.0, children_system=0.25, children=[kernel, gone])
    assert process_tree_seconds(server)() == pytest.approx(8.0)


def test_the_process_tree_of_this_process_sees_a_subprocess_working_and_keeps_it_once_reaped():
    """The child burns CPU time, not wall time, and says when it has burned half: on a busy machine it only
    takes longer (with a wall-clock burn it got 0.12 s of CPU in 0.6 s there)."""
    read = process_tree_seconds()
    before = read()
    # CPU seconds, not wall-clock ones, so that a busy machine cannot make it burn less; it waits, alive, while
    # it is read in the middle
    burn = ("import sys, time\n"
            "def spin(seconds):\n"
            "    end = time.process_time() + seconds\n"
            "    while time.process_time() < end: pass\n"
            "spin(0.3); print('half', flush=True); sys.stdin.readline(); spin(0.3)")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline() == "half\n"
    during = read()
    child.communicate("go\n", timeout=60)
    after = read()
    assert during - before > 0.2  # (the kernel counts CPU time in ticks: a margin)
    assert after - before > 0.5  # reaped: its time is this process's children's


# ------------------------------------------------------------------------------------------ the reports

class Hub(http.server.BaseHTTPRequestHandler):
    """A stand-in for the hub's work API: records each POST, answers `Hub.answer` (bytes as they are)."""
    reports: list[tuple[str, str, str, dict]] = []
    answer: dict | bytes = {}
    status = 200
    delay = 0.0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hub.reports.append((self.path, self.headers.get("Authorization", ""), self.headers.get("Content-Type"),
                            body))
        time.sleep(Hub.delay)
        answer = Hub.answer if isinstance(Hub.answer, bytes) else json.dumps(Hub.answer).encode()
        self.send_response(Hub.status)
        if Hub.status == 302:  # as JupyterHub sends a request it does not take to its login page
            self.send_header("Location", "/hub/login")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def do_GET(self):  # the login page
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, hub_api_server):
    Hub.reports = []
    Hub.answer = {"report_every_s": 15, "cpu_active_percent": 50}
    Hub.status = 200
    Hub.delay = 0.0
    Hub.server = hub_api_server(Hub)
    monkeypatch.setenv("JUPYTERHUB_USER", "kim")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "")
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    return Hub


def reports() -> list[dict]:
    """The bodies of the reports the hub heard, less the server's name and the user's activity (told_activity)."""
    return [{k: v for k, v in body.items() if k not in ("server", "last_activity")} for *_, body in Hub.reports]


def told_activity() -> list[str | None]:
    return [body.get("last_activity") for *_, body in Hub.reports]


class Server:
    """A ServerActivity with a stand-in kernel manager, CPU counter and clocks, checked by hand CHECK_S apart."""
    def __init__(self, cpu: bool = True):
        self.kernels = Kernels()
        self.cpu = 0.0
        self.now = 0.0  # seconds since the first check
        self.settings: dict = {}
        self.checked = False
        self.activity = ServerActivity(self.settings, self.kernels, HubReporter(),
                                       (lambda: self.cpu) if cpu else None,
                                       clock=lambda: 1000.0 + self.now, wall=lambda: START + self.now)

    def check(self, kernel: str = "idle", cpu_percent: float = 0.0) -> None:
        """The next check: CHECK_S later unless the first, with a kernel in this state and this CPU use since the
        last one; its report (if any) waited for."""
        self.kernels.kernels = {"k": SimpleNamespace(execution_state=kernel)}
        if self.checked:
            self.now += CHECK_S
            self.cpu += cpu_percent / 100 * CHECK_S
        self.checked = True

        async def main():
            sending = self.activity.check()
            if sending is not None:
                await sending
        asyncio.run(main())


def test_reported_at_start_with_the_servers_own_token(hub):
    server = Server()
    server.check()
    assert hub.reports == [(WORK_PATH, "token server-token", "application/json", dict(IDLE, server=""))]
    assert (server.activity.reporter.report_every_s, server.activity.reporter.cpu_active_percent) == (15, 50.0)
    server.check()
    server.check()
    assert len(hub.reports) == 1  # idle and unchanged: nothing to tell


def test_the_server_is_named_in_the_body_the_user_quoted_in_the_url(hub, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "kim@lab")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu run/2")
    Server().check()
    [(path, _, _, body)] = hub.reports
    assert path == "/hub/api/users/kim%40lab/work" and body["server"] == "gpu run/2"


def test_reported_at_once_on_a_change_and_every_report_every_s_while_working(hub):
    server = Server()
    server.check()
    server.check(kernel="busy")  # at 5 s
    assert reports() == [IDLE, busy("kernel", START + 5)]
    for _ in range(2):  # 10 s, 15 s: less than report_every_s (15) since the last report
        server.check(kernel="busy")
    assert len(hub.reports) == 2
    server.check(kernel="busy")  # 20 s: 15 s since the last one
    assert reports()[2:] == [busy("kernel", START + 5)]
    server.check(cpu_percent=80.0)  # 25 s: the cell ended, its subprocess goes on: the same spell
    assert reports()[3:] == [busy("cpu", START + 5)]
    server.check(cpu_percent=20.0)  # below the hub's threshold (50)
    assert reports()[4:] == [IDLE]
    for _ in range(5):
        server.check()
    assert len(hub.reports) == 5  # idle and unchanged: nothing to tell


def test_the_hubs_settings_are_adopted(hub):
    hub.answer = {"report_every_s": 5, "cpu_active_percent": 12.5}
    server = Server()
    server.check()
    reporter = server.activity.reporter
    assert (reporter.report_every_s, reporter.cpu_active_percent) == (5, 12.5)
    server.check(cpu_percent=12.5)
    server.check(cpu_percent=13.0)
    assert reports() == [IDLE, busy("cpu", START + 5), busy("cpu", START + 5)]  # reported every check now
    hub.answer = {"report_every_s": 30}  # a setting not said is kept
    server.check(cpu_percent=13.0)
    assert (reporter.report_every_s, reporter.cpu_active_percent) == (30, 12.5)


def test_defaults_until_the_hub_answers(hub):
    hub.status = 503
    reporter = Server().activity.reporter
    assert (reporter.report_every_s, reporter.cpu_active_percent) == (DEFAULT_REPORT_EVERY_S,
                                                                      DEFAULT_CPU_ACTIVE_PERCENT) == (60, 10.0)


@pytest.mark.parametrize("answer", [
    {"report_every_s": 0, "cpu_active_percent": 20},
    {"report_every_s": "60"},
    {"report_every_s": True},
    {"report_every_s": 2.5},
    {"cpu_active_percent": -1},
    {"cpu_active_percent": "10"},
    {"cpu_active_percent": True},
    {"report_every_s": 10, "cpu_active_percent": None},
    [60, 10],
    b"<html>a proxy's page</html>",
], ids=repr)
def test_a_bad_answer_is_ignored_and_the_report_counts_as_taken(hub, answer, caplog):
    server = Server()
    server.check()
    hub.answer = answer
    with caplog.at_level(logging.DEBUG, logger="barehub.server_activity"):
        server.check(kernel="busy")
        server.check(kernel="busy")
        assert reports() == [IDLE, busy("kernel", START + 5)]  # taken: not sent again at the next check
        server.check()
    reporter = server.activity.reporter
    assert (reporter.report_every_s, reporter.cpu_active_percent) == (15, 50.0)
    assert reports() == [IDLE, busy("kernel", START + 5), IDLE]
    assert [r.levelname for r in caplog.records if r.name == "barehub.server_activity"] == ["WARNING", "DEBUG"]


def restart(port: int) -> None:
    """The hub back on its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    Hub.server = server


@pytest.mark.parametrize("failure", ["down", "error", "redirect"])
def test_a_hub_that_does_not_take_a_report_is_told_again_at_the_next_check(hub, failure, caplog):
    server = Server()
    server.check()
    port = hub.server.server_port
    if failure == "down":
        hub.server.shutdown()
        hub.server.server_close()
    else:
        hub.status = 503 if failure == "error" else 302
    with caplog.at_level(logging.DEBUG, logger="barehub.server_activity"):
        server.check(kernel="busy")  # at 5 s: the hub misses the change...
        server.check(kernel="busy")
        assert server.activity.state.busy == "kernel" and server.activity.sending is None
        if failure == "down":
            restart(port)
        hub.status = 200
        server.check(kernel="busy")  # ... and hears it at the next check it answers
    try:
        assert reports()[-1] == busy("kernel", START + 5)
        assert len(reports()) == (2 if failure == "down" else 4)
        levels = [r.levelname for r in caplog.records if r.name == "barehub.server_activity"]
        assert levels == ["WARNING", "DEBUG", "INFO"]  # a warning once per failing spell
        server.check(kernel="busy")
        assert len(reports()) == (2 if failure == "down" else 4)  # taken: told again after report_every_s
    finally:
        if failure == "down":
            hub.server.shutdown()
            hub.server.server_close()


def test_a_spell_begun_and_ended_while_the_hub_was_down_is_not_told(hub):
    server = Server()
    server.check()
    hub.status = 503
    server.check(kernel="busy")
    hub.status = 200
    server.check()
    assert reports() == [IDLE, busy("kernel", START + 5)]  # tried once, refused; then nothing new to tell


def test_one_request_at_a_time(hub):
    hub.delay = 0.3

    async def main():
        server = Server()
        first = server.activity.check()
        server.now = CHECK_S
        server.kernels.kernels = {"k": SimpleNamespace(execution_state="busy")}
        assert server.activity.check() is None  # the first is still on its way
        await first
        server.now = 2 * CHECK_S
        await server.activity.check()
    asyncio.run(main())
    assert reports() == [IDLE, busy("kernel", START + CHECK_S)]


def test_the_local_activity_moves_while_working(hub):
    server = Server()
    server.check()
    server.check(cpu_percent=5.0)
    assert SETTINGS_KEY not in server.settings
    server.check(cpu_percent=60.0)
    first = server.settings[SETTINGS_KEY]
    assert abs(first - datetime.now(timezone.utc)) < timedelta(seconds=5)
    time.sleep(0.01)
    server.check(kernel="busy")
    assert server.settings[SETTINGS_KEY] > first
    last = server.settings[SETTINGS_KEY]
    server.check()
    assert server.settings[SETTINGS_KEY] == last


def test_jupyter_servers_last_activity_counts_the_setting():
    from jupyter_server.serverapp import ServerWebApplication

    long_ago = datetime.now(timezone.utc) - timedelta(hours=3)
    now = datetime.now(timezone.utc)
    app = SimpleNamespace(settings={"started": long_ago, "kernel_manager": SimpleNamespace(
        last_kernel_activity=long_ago), "last_activity_times": {"api": long_ago}, SETTINGS_KEY: now})
    assert ServerWebApplication.last_activity(app) == now


def test_no_hub_the_local_activity_only(monkeypatch):
    for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    server = Server()
    server.check()
    server.check(kernel="busy")
    assert server.activity.reporter.url is None
    assert server.activity.state.busy == "kernel" and SETTINGS_KEY in server.settings


@pytest.mark.parametrize("missing", ["JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER"])
def test_no_hub_without_its_url_token_and_user(hub, monkeypatch, missing):
    monkeypatch.delenv(missing)
    server = Server()
    server.check()
    server.check(kernel="busy")
    assert hub.reports == [] and server.activity.reporter.url is None


def test_without_a_cpu_reading_the_kernels_still_count(hub):
    server = Server(cpu=False)
    server.check()
    server.check(kernel="busy")
    assert reports() == [IDLE, busy("kernel", START + 5)]


def test_a_failing_cpu_reading_is_no_reading(hub):
    server = Server()
    server.check()

    def gone() -> float:
        raise OSError("the cgroup is gone")
    server.activity.cpu_seconds = gone
    server.check(cpu_percent=90.0)
    assert server.activity.state.busy is None


def test_https_hub_uses_the_system_cas_unless_internal_ssl(tmp_path):
    env = {"JUPYTERHUB_API_URL": "https://hub.example.org/hub/api", "JUPYTERHUB_USER": "kim",
           "JUPYTERHUB_API_TOKEN": "t"}
    assert HubReporter(env).ssl is None
    missing = dict(env, JUPYTERHUB_SSL_KEYFILE=str(tmp_path / "k"), JUPYTERHUB_SSL_CERTFILE=str(tmp_path / "c"))
    with pytest.raises(OSError):  # internal_ssl: its client certificate is loaded (here: there is none)
        HubReporter(missing)


def test_enabled_for_every_server_of_the_env():
    config = json.loads((SERVER_CONFIG / "jupyter_server_config.d" / "barehub.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["barehub.server_activity"] is True
    assert server_activity._jupyter_server_extension_points() == [{"module": "barehub.server_activity"}]


# ------------------------------------------------------------------------------------------ in a real server


def wait_for(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what}; the hub heard {reports()}"
        time.sleep(0.1)


async def execute(url: str, kernel_id: str, code: str) -> None:
    """Run code in a kernel as JupyterLab does: an execute_request on the kernel's websocket."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    session = uuid.uuid4().hex
    ws = await websocket_connect(HTTPRequest(
        url.replace("http:", "ws:") + f"api/kernels/{kernel_id}/channels?session_id={session}",
        headers=SERVER_AUTH))
    message = {"header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "username": "kim",
                          "session": session, "date": datetime.now(timezone.utc).isoformat(), "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
               "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
    await ws.write_message(json.dumps(message))
    while True:  # until the kernel says it has begun
        reply = json.loads(await ws.read_message())
        if reply["msg_type"] == "execute_input":
            break
    ws.close()


def test_a_real_server_reports_a_kernel_sleeping_in_a_cell(hub, tmp_path):
    hub.answer = {"report_every_s": 60, "cpu_active_percent": 1000}  # the CPU never counts: the kernel does
    log = tmp_path / "server.log"
    with log.open("wb") as stderr:
        server, url = start_jupyter_server(tmp_path, stderr)
    try:
        wait_for(lambda: reports() or server.poll() is not None, 30, "no report at start")
        assert server.poll() is None, log.read_text()
        [(path, auth, kind, body)] = hub.reports
        assert (path, auth, kind) == (WORK_PATH, "token server-token", "application/json")
        assert {**body, "last_activity": "?"} == dict(IDLE, server="", last_activity="?")  # its start: activity
        assert "barehub server activity: CPU from the process tree" in log.read_text()
        token = SERVER_AUTH
        response = requests.post(url + "api/kernels", json={"name": "python3"}, headers=token, timeout=30)
        assert response.status_code == 201, response.text
        began = time.time()
        asyncio.run(execute(url, response.json()["id"], "import time; time.sleep(8)"))
        wait_for(lambda: any(r["busy"] == "kernel" for r in reports()), 15, "no busy report")
        wait_for(lambda: reports()[-1] == IDLE and len(reports()) > 2, 15, "no idle report after the cell")
    finally:
        server.terminate()
        server.wait(10)
    said = reports()
    assert said[0] == IDLE and said[-1] == IDLE and {r["busy"] for r in said[1:-1]} == {"kernel"}
    [since] = {r["busy_since"] for r in said[1:-1]}
    since = datetime.fromisoformat(since.replace("Z", "+00:00")).timestamp()
    assert began - 1 <= since <= began + CHECK_S + 1


def test_a_report_the_hub_refuses_for_good_is_not_hammered_every_check(hub, caplog):
    """A 4xx (the hub thinks the server stopped: 409/404; a token it no longer takes: 403) is an answer: told again
    with the next change or heartbeat, not every CHECK_S; one warning."""
    server = Server()
    server.check()
    hub.status = 409
    with caplog.at_level(logging.DEBUG, logger="barehub.server_activity"):
        server.check(kernel="busy")
        server.check(kernel="busy")
        server.check(kernel="busy")
    assert len(reports()) == 2  # the start, and the change once
    levels = [r.levelname for r in caplog.records if r.name == "barehub.server_activity"]
    assert levels == ["WARNING"]
    server.check(kernel="idle")  # the next change is told
    assert len(reports()) == 3 and reports()[-1] == {"busy_since": None, "busy": None}


class Activity:
    """jupyter-server's last_activity(), as the user's requests move it."""
    def __init__(self):
        self.moment = datetime.fromtimestamp(START, timezone.utc)

    def __call__(self):
        return self.moment


def test_an_idle_server_tells_the_users_own_activity_at_most_every_report_every_s(hub):
    """jupyterhub-singleuser tells the hub every 300 s; a profile's timeout of a few minutes would cull a user who
    types. An idle server tells the user's activity when it moved, at the hub's cadence (15 s here); not when it
    did not move; a busy one does not (busy is now)."""
    server = Server()
    activity = server.activity.last_activity = Activity()
    server.check()  # at start: the server's start is its activity
    assert told_activity() == [iso(START)]
    activity.moment = datetime.fromtimestamp(START + 3, timezone.utc)  # she types
    server.check()  # 5 s: not yet (15 s since the last report)
    server.check()
    server.check()  # 15 s
    assert told_activity() == [iso(START), iso(START + 3)] and reports()[-1] == IDLE
    server.check()
    server.check()
    server.check()  # 30 s: nothing new
    assert len(Hub.reports) == 2
    server.check(kernel="busy")  # busy: told as busy, not as her activity
    assert told_activity()[-1] is None and reports()[-1]["busy"] == "kernel"
