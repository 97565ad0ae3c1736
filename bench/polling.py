"""The hub's cost of many running servers, barehub's spawners side by side with upstream's, in one run.

Slurm: servers as jobs on the test cluster (tests/integration/slurm_cluster.py: a login node with slurmctld and the
hub, two compute nodes, oversubscribed so that 200 one-CPU 64 MB jobs fit), barehub's SlurmSpawner against
upstream's batchspawner.SlurmSpawner. Local: servers as systemd units in one booted container, barehub's
LocalSpawner against upstream's systemdspawner.SystemdSpawner. The same hub otherwise (barehub's install, its
shipped slurm.py fragment; only c.JupyterHub.spawner_class differs), JupyterHub's default poll interval (30 s)
for both. Every server is bench/tinyserver.py (a Slurm job's reports its port to the hub first, as
barehub.batch_singleuser does), one per user b000..b199.

For each setup, servers are started up to N = 20, 100, 200 (in batches of 20); at each N, with every server
running:
- idle (IDLE_S): the hub's CPU (its unit's cgroup, CPUUsageNSec of jupyterhub.service: the squeue, sudo and
  systemctl it forks count), slurmctld's RPCs from sdiag (reset at the start), squeue calls from those RPCs (each
  squeue sends one job-info RPC: measured at the start of the run and kept in the results);
- under activity reports (REPORTS_S): every server posts JupyterHub's activity report every REPORT_EVERY_S (a
  compressed rate: jupyterhub-singleuser posts every 300 s) while one client asks GET /hub/api/users/NAME every
  API_EVERY_S: its latencies (p50, p99), and the hub's CPU meanwhile. The API loop is not in the idle window: its
  own cost would be most of an idle hub's.
Writes bench/polling-results.md and .json.
Run: sudo .venv-tests/bin/python -m bench.polling [--sizes 20,100,200] [--only slurm|local]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.box import CONFIG_D, HUB as HUB_URL, installed  # noqa: E402
from bench.report import save  # noqa: E402
from testbed.web import wait_until  # noqa: E402
from testbed.wheelhouse import CACHE, build_wheelhouse  # noqa: E402
from tests.integration.helpers import (HTTP_PORT, HUB, REPO, bootstrap_cmd, cgroup_cpu_s, filled,  # noqa: E402
                                       put_fragment)
from tests.integration.slurm_cluster import ADDRESSES, SlurmCluster  # noqa: E402

SIZES = (20, 100, 200)
# The idle window spans the period of the hub's own 5-minute work, the same in every setup: JupyterHub's
# last-activity pass over all routes (last_activity_interval, 300 s) and the idle culler's pass over all users
# (cull_every: half the 1-hour timeout, capped at 300 s). A 60 s window caught one of them, or none, at random: with
# 200 servers such a pass costs about as much as the rest of an idle minute.
IDLE_S, REPORTS_S = 300, 30
REPORT_EVERY_S = 10
API_EVERY_S = 0.1
BATCH = 20  # servers started at once
USERS = [f"b{i:03d}" for i in range(1000)]
FIRST_UID = 5000
SWITCH = "/home/bench-reports"  # tinyserver.py --activity: "activity" or "off"; one line per report in SWITCH.log
SPAWNERS = {
    "slurm": {"upstream": "batchspawner.SlurmSpawner", "barehub": "barehub.slurm_spawner.SlurmSpawner"},
    "local": {"upstream": "systemdspawner.SystemdSpawner", "barehub": "barehub.local_spawner.LocalSpawner"},
}
# the compute nodes' 12 cores, each shared by up to 32 jobs (the test cluster's own partition is cn1 alone)
PARTITION = "PartitionName=cpu Nodes=cn1 Default=YES MaxTime=INFINITE State=UP\n"
BENCH_PARTITION = "PartitionName=cpu Nodes=cn1,cn2 Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:32\n"
BENCH_PROFILE = "Bench: 1 CPU, 64 MB"
TINYSERVER = "/home/bench-tinyserver.py"  # on the shared /home: every node reads it there
COMMON = f"""
c.Barehub.servers_run_as_unix_users = True  # (common.py's simple spawner did not)
c.Barehub.idle_culler = False  # the servers are idle by design
"""
SLURM = COMMON + f"""
import sys
from pathlib import Path
c.Spawner.pre_spawn_hook = None  # (common.py's fixed ports are for local servers; a job picks its own)
c.SlurmSpawner.batchspawner_singleuser_cmd = f"{{Path(sys.executable).parent}}/python {TINYSERVER} --batch"
c.Spawner.cmd = ["--activity", "{SWITCH}", "{REPORT_EVERY_S}"]
c.SlurmSpawner.req_partition, c.SlurmSpawner.req_nprocs, c.SlurmSpawner.req_memory = "cpu", "1", "64M"
"""
LOCAL = COMMON + f"""
c.Spawner.args = ["--activity", "{SWITCH}", "{REPORT_EVERY_S}"]
"""


def log(msg: str) -> None:
    print(f"bench: {time.strftime('%H:%M:%S')} {msg}", flush=True)


class Site:
    """Where the hub runs and how the bench reaches it: `box` (the hub's container), `url` (its public URL),
    `client()` (a context in which this thread's sockets reach it)."""

    def __init__(self, kind: str, box, url: str, token: str, client=contextlib.nullcontext):
        self.kind, self.box, self.url, self.client = kind, box, url, client
        self.auth = {"Authorization": f"token {token}"}

    def api(self, method: str, path: str, **kw) -> requests.Response:
        with self.client():
            return requests.request(method, f"{self.url}/hub/api/{path}", headers=self.auth, timeout=120, **kw)

    def ready(self) -> set[str]:
        """The users whose default server is ready (the API answers 200 users a page)."""
        names: set[str] = set()
        while True:
            page = self.api("GET", f"users?state=ready&limit=200&offset={len(names)}").json()
            names |= {u["name"] for u in page}
            if len(page) < 200:
                return names

    def active(self) -> set[str]:
        names: set[str] = set()
        while True:
            page = self.api("GET", f"users?state=active&limit=200&offset={len(names)}").json()
            names |= {u["name"] for u in page}
            if len(page) < 200:
                return names

    def hub_cpu_s(self) -> float:
        return cgroup_cpu_s(self.box, HUB)

    def use_spawner(self, spawner: str) -> None:
        put_fragment(self.box, "92-bench-spawner.py", f'c.JupyterHub.spawner_class = "{spawner}"\n')
        self.box.run(f"systemctl restart {HUB}", timeout=180)
        with self.client():
            wait_until(lambda: requests.get(f"{self.url}/hub/health", timeout=5).status_code == 200, 120)
        # systemd counts the unit's CPU in its cgroup, children included (from now on, until the container ends)
        self.box.run(f"systemctl set-property --runtime {HUB} CPUAccounting=yes")

    def switch(self, mode: str) -> None:
        self.box.run(f"echo {mode} > {SWITCH}")

    def reports_sent(self) -> int:
        return int(self.box.run(f"cat {SWITCH}.log | wc -l").stdout.strip())

    def reports_refused(self) -> int:
        return int(self.box.run(f"grep -c refused {SWITCH}.log", check=False).stdout.strip() or 0)


def start_servers(site: Site, users: list[str]) -> float:
    """Start the users' default servers, BATCH at a time, each batch until every server is ready; seconds."""
    start = time.monotonic()
    site.api("POST", "users", json={"usernames": users})
    for i in range(0, len(users), BATCH):
        batch = users[i:i + BATCH]
        with ThreadPoolExecutor(len(batch)) as pool:
            answers = list(pool.map(lambda u: site.api("POST", f"users/{u}/server"), batch))
        refused = [(u, r.status_code, r.text[:200]) for u, r in zip(batch, answers) if r.status_code not in (201, 202)]
        assert not refused, refused
        wait_until(lambda: set(batch) <= site.ready(), 600, interval=2)
    return time.monotonic() - start


def stop_servers(site: Site, users: list[str]) -> None:
    with ThreadPoolExecutor(BATCH) as pool:
        list(pool.map(lambda u: site.api("DELETE", f"users/{u}/server"), users))
    wait_until(lambda: not site.active() & set(users), 600, interval=2)
    if site.kind == "slurm":
        wait_until(lambda: site.box.run("squeue -h").stdout.strip() == "", 300, interval=2)


def job_info_rpcs(box) -> tuple[int, int]:
    """(REQUEST_JOB_INFO* RPCs, all RPCs) slurmctld counted since its last `sdiag --reset`, by message type."""
    out = box.run("sdiag").stdout
    section = out.split("by message type", 1)[1].split("by user", 1)[0]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", section, re.M)}
    counts.pop("REQUEST_STATS_INFO", None)  # the sdiag asking
    return sum(n for t, n in counts.items() if t.startswith("REQUEST_JOB_INFO")), sum(counts.values())


def squeue_rpcs(box) -> dict[str, int]:
    """The job-info RPCs one squeue call sends, of each kind the spawners run (so RPCs are squeue calls)."""
    job = box.run("squeue -h -o %i | head -1").stdout.strip()
    rpcs = {}
    for label, cmd in (("squeue -j ID (one job)", f"squeue -h -t all -j {job} -o '%T %B'"),
                       ("squeue (all jobs)", "squeue -h -t all -o '%i %T %B'")):
        box.run("sdiag --reset")
        box.run(cmd)
        rpcs[label] = job_info_rpcs(box)[0]
    return rpcs


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def api_loop(site: Site, seconds: float) -> dict:
    """GET /hub/api/users/b000 every API_EVERY_S for `seconds`: latencies in ms, and failures."""
    took, failed = [], 0
    with site.client():
        session = requests.Session()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.monotonic()
            try:
                ok = session.get(f"{site.url}/hub/api/users/{USERS[0]}", headers=site.auth, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            elapsed = time.monotonic() - start
            took.append(elapsed * 1000)
            failed += not ok
            time.sleep(max(0.0, API_EVERY_S - elapsed))
    return {"n": len(took), "failed": failed, "p50_ms": statistics.median(took), "p99_ms": percentile(took, 0.99),
            "max_ms": max(took)}


def measure(site: Site, idle_s: float, reports_s: float) -> dict:
    site.switch("off")
    time.sleep(15)  # the last spawns' start-up polls are over
    slurm = site.kind == "slurm"
    if slurm:
        site.box.run("sdiag --reset")
    cpu, start = site.hub_cpu_s(), time.monotonic()
    time.sleep(idle_s)
    minutes = (time.monotonic() - start) / 60
    row = {"idle_hub_cpu_s_per_min": (site.hub_cpu_s() - cpu) / minutes}
    if slurm:
        job_info, total = job_info_rpcs(site.box)
        row |= {"job_info_rpcs_per_min": job_info / minutes, "rpcs_per_min": total / minutes}
    site.switch("activity")
    time.sleep(REPORT_EVERY_S + 2)  # every server is reporting
    cpu, sent, refused, start = site.hub_cpu_s(), site.reports_sent(), site.reports_refused(), time.monotonic()
    api = api_loop(site, reports_s)
    minutes = (time.monotonic() - start) / 60
    row |= {"reports_hub_cpu_s_per_min": (site.hub_cpu_s() - cpu) / minutes,
            "reports_per_min": (site.reports_sent() - sent) / minutes,
            "reports_refused": site.reports_refused() - refused, "api": api}
    site.switch("off")
    return row


def measure_site(site: Site, sizes: list[int], idle_s: float, reports_s: float) -> dict:
    """Upstream first, then barehub; at each size, the servers added to those already running."""
    results = {}
    site.box.run(f"echo off > {SWITCH} && : > {SWITCH}.log && chmod 644 {SWITCH} && chmod 666 {SWITCH}.log")
    for setup in ("upstream", "barehub"):
        spawner = SPAWNERS[site.kind][setup]
        log(f"{site.kind}: {setup} ({spawner})")
        site.use_spawner(spawner)
        rows, running = {}, 0
        try:
            for n in sizes:
                took = start_servers(site, USERS[running:n])
                log(f"{site.kind} {setup}: {n} servers running ({took:.0f} s to start {n - running})")
                running = n
                rows[str(n)] = {**measure(site, idle_s, reports_s), "start_s": round(took, 1)}
                if site.kind == "local" and setup == "barehub":  # (outside the windows measured above)
                    rows[str(n)]["systemctl_calls"] = systemctl_calls(site.box, USERS[:n])
                log(f"{site.kind} {setup} N={n}: {rows[str(n)]}")
        finally:
            stop_servers(site, USERS[:running])
        results[setup] = rows
    return results


# CPU of one shared poll's systemctl call for the N running units, the old way (`show`, as barehub at 3fbb7b6) and
# the new (`list-units`): the systemctl process's own (its rusage) and systemd's (init.scope's cgroup), each averaged
SYSTEMCTL_CALLS = r"""
import json, pathlib, resource, subprocess, sys
units = [f"jupyter-{user}-singleuser" for user in sys.argv[1:]]
calls = {"show": ["systemctl", "show", "--property=Id", "--property=ActiveState", "--property=SubState",
                  "--property=LoadState", "--property=Result", "--property=ExecMainStatus", "--", *units],
         "list-units": ["systemctl", "list-units", "--all", "--plain", "--no-legend", "--full", "--no-pager", "--",
                        *(f"{unit}.service" for unit in units)]}
stats = [path for path in (pathlib.Path("/sys/fs/cgroup/init.scope/cpu.stat"),
                           pathlib.Path("/sys/fs/cgroup/unified/init.scope/cpu.stat")) if path.exists()]
def pid1_s():
    return int(dict(l.split() for l in stats[0].read_text().splitlines())["usage_usec"]) / 1e6 if stats else 0.0
def own_s():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime
out = {}
for name, cmd in calls.items():
    own, pid1 = own_s(), pid1_s()
    for _ in range(REPS):
        subprocess.run(cmd, capture_output=True, check=True)
    out[name] = {"systemctl_ms": (own_s() - own) / REPS * 1e3,
                 "systemd_ms": (pid1_s() - pid1) / REPS * 1e3 if stats else None}
print(json.dumps(out))
""".replace("REPS", "5")


def systemctl_calls(box, users: list[str]) -> dict:
    return json.loads(box.run(f"python3 - {' '.join(users)}", input=SYSTEMCTL_CALLS).stdout)


def add_users(box, count: int, home: bool) -> None:
    box.run(f"for i in $(seq 0 {count - 1}); do n=$(printf b%03d $i); u=$(({FIRST_UID} + i)); "
            f"groupadd -g $u $n && useradd -u $u -g $u -s /bin/bash {'-m' if home else '-M'} $n || exit 1; done",
            timeout=600)


def run_slurm(sizes: list[int], idle_s: float, reports_s: float) -> dict:
    wheelhouse = build_wheelhouse(REPO, CACHE)
    work = Path(tempfile.mkdtemp(prefix="barehub-bench-polling-"))
    cluster = SlurmCluster(f"bp{os.getpid()}", work, {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse",
                                                      str(REPO / "bench"): "/mnt/bench"}, accounting=False)
    assert PARTITION in cluster.slurm_conf
    cluster.slurm_conf = cluster.slurm_conf.replace(PARTITION, BENCH_PARTITION)
    try:
        log(f"slurm: cluster up in {cluster.start():.0f} s")
        for node, box in cluster.nodes.items():
            add_users(box, max(sizes), home=node == "login")
        login = cluster.login
        token = login.run("python3 -c 'import secrets; print(secrets.token_hex(16))'").stdout.strip()
        login.run(f"mkdir -p /etc/bench && echo {token} > /etc/bench/token && chmod 600 /etc/bench/token")
        login.run(f"cp /mnt/bench/tinyserver.py {TINYSERVER} && chmod 644 {TINYSERVER}")
        put_fragment(login, "40-slurm.py", filled("slurm.py", {
            "https://hub.example.org": f"http://login:{HTTP_PORT}",
            "PROFILES = {\n": "PROFILES = {\n" + f'    "{BENCH_PROFILE}": ' +
                              '{"partition": "cpu", "nprocs": "1", "memory": "64M"},\n'}))
        login.run(bootstrap_cmd(), timeout=900)
        login.run(f"cp /mnt/bench/configs/common.py {CONFIG_D}/90-bench.py")
        put_fragment(login, "91-bench-polling.py", SLURM)
        site = Site("slurm", login, f"http://{ADDRESSES['login']}:{HTTP_PORT}", token, cluster.on_login_node)
        job = login.run("runuser -u b000 -- sbatch --parsable -c 1 --mem=16M -o /dev/null --wrap 'sleep 60'").stdout
        rpcs = squeue_rpcs(login)
        login.run(f"scancel {job.strip()}")
        return {"squeue_rpcs": rpcs, "setups": measure_site(site, sizes, idle_s, reports_s)}
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)  # the nodes' shared /home and prefix (600 MB)


def run_local(sizes: list[int], idle_s: float, reports_s: float) -> dict:
    with installed("polling") as (box, token):
        add_users(box, max(sizes), home=True)
        put_fragment(box, "91-bench-polling.py", LOCAL)
        site = Site("local", box, HUB_URL, token)
        return {"setups": measure_site(site, sizes, idle_s, reports_s)}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--only", choices=("slurm", "local"))
    parser.add_argument("--idle-s", type=float, default=IDLE_S)
    parser.add_argument("--reports-s", type=float, default=REPORTS_S)
    parser.add_argument("--name", default="polling-results",
                        help="the results' file name in bench/ (another keeps polling-results.md as it is)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (it boots systemd containers)", file=sys.stderr)
        return 1
    sizes = [int(n) for n in args.sizes.split(",")]
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "sizes": sizes,
                     "idle_s": args.idle_s, "reports_s": args.reports_s, "report_every_s": REPORT_EVERY_S,
                     "api_every_s": API_EVERY_S, "poll_interval_s": 30,
                     "commit": subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                              capture_output=True, text=True).stdout.strip()}
    kept = Path(__file__).resolve().parent / f"{args.name}.json"
    if args.only and kept.exists():  # the other kind's results, from its own run with the same sizes
        earlier = json.loads(kept.read_text())
        other = "local" if args.only == "slurm" else "slurm"
        if earlier.get("sizes") == sizes and other in earlier:
            results[other] = {"idle_s": earlier.get("idle_s"), "commit": earlier.get("commit"), **earlier[other]}
    for kind, run in (("slurm", run_slurm), ("local", run_local)):
        if args.only in (None, kind):
            results[kind] = {**run(sizes, args.idle_s, args.reports_s), "idle_s": args.idle_s,
                             "commit": results["commit"]}
            save(results, args.name, write_report)  # each kind's as soon as it is measured
    return 0


def ratio(bare: float, upstream: float) -> str:
    return f"{bare / upstream:.2f}x" if upstream else "-"


def squeue_calls(row: dict, rpcs_per_call: int) -> float:
    return row["job_info_rpcs_per_min"] / max(1, rpcs_per_call)


def write_report(results: dict, path: Path) -> None:
    sizes, poll = [str(n) for n in results["sizes"]], results["poll_interval_s"]
    calls_allowed = 2 * 60 / poll  # the target: at most 2 squeue calls per poll interval
    lines = [f"# The hub's cost of {sizes[-1]} running servers: barehub's spawners against upstream's", "",
             f"Measured {results['machine']['date']} on one machine ({results['machine']['cores']} cores), one run per kind (`bench/polling.py`), upstream first, then barehub, in the same containers with the same hub and "
             "config (barehub's install; only `c.JupyterHub.spawner_class` differs), JupyterHub's default poll "
             f"interval ({poll} s) for both. Every server is `bench/tinyserver.py` (tornado), one per user, started "
             f"{BATCH} at a time up to each N (the servers of the smaller N keep running). Per N: the hub idle for "
             "the kind's idle window (said in its section; 300 s spans the hub's own 5-minute passes) (its unit's cgroup CPU, `CPUUsageNSec` of jupyterhub.service, so the "
             "squeue, sudo and systemctl it forks count; slurmctld's RPCs by `sdiag`, reset at the window's start), "
             f"then {results['reports_s']:.0f} s with every server posting JupyterHub's activity report every "
             f"{results['report_every_s']} s (a compressed rate: jupyterhub-singleuser posts every 300 s) while one "
             f"client asks `GET /hub/api/users/NAME` every {results['api_every_s']} s (p99 of its answers, through "
             "traefik). Re-run: `sudo .venv-tests/bin/python -m bench.polling` (about 80 min; "
             "`--sizes 20,100,200 --only slurm|local`).", ""]
    if "slurm" in results:
        slurm = results["slurm"]
        up, bare = slurm["setups"]["upstream"], slurm["setups"]["barehub"]
        per_call = max(slurm["squeue_rpcs"].values())
        lines += ["## Slurm: servers as jobs (barehub's SlurmSpawner vs batchspawner.SlurmSpawner 1.3.0)", "",
                  "Test cluster (tests/integration/slurm_cluster.py): slurmctld and the hub on a login node, two "
                  "compute nodes (4 + 8 cores, `OverSubscribe=FORCE:32`), each job 1 CPU and 64 MB; Slurm 22.05. "
                  f"Idle window: {slurm.get('idle_s') or results['idle_s']:.0f} s; barehub at commit "
                  f"{slurm.get('commit') or results.get('commit', '?')}. "
                  "squeue calls: slurmctld's job-info RPCs (`REQUEST_JOB_INFO*`; one squeue sends "
                  + ", ".join(f"{n} ({label})" for label, n in slurm["squeue_rpcs"].items()) + ").", "",
                  "| N | hub CPU s/min: upstream | barehub | barehub/upstream | squeue calls/min: upstream | barehub "
                  "| slurmctld RPCs/min (all): upstream | barehub | API p99 ms: upstream | barehub |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for n in sizes:
            u, b = up[n], bare[n]
            lines.append(f"| {n} | {u['idle_hub_cpu_s_per_min']:.2f} | {b['idle_hub_cpu_s_per_min']:.2f} | "
                         f"{ratio(b['idle_hub_cpu_s_per_min'], u['idle_hub_cpu_s_per_min'])} | "
                         f"{squeue_calls(u, per_call):.0f} | {squeue_calls(b, per_call):.0f} | "
                         f"{u['rpcs_per_min']:.0f} | {b['rpcs_per_min']:.0f} | "
                         f"{u['api']['p99_ms']:.0f} | {b['api']['p99_ms']:.0f} |")
        lines += [""]
        top_u, top_b = up[sizes[-1]], bare[sizes[-1]]
        cpu_ratio = top_b["idle_hub_cpu_s_per_min"] / top_u["idle_hub_cpu_s_per_min"]
        worst_calls = max(squeue_calls(bare[n], per_call) for n in sizes)
        lines += [f"Targets: hub CPU at {sizes[-1]} idle servers at most 1/5 of upstream's: {cpu_ratio:.3f}x, "
                  f"{'met' if cpu_ratio <= 0.2 else 'missed'}; squeue calls per minute independent of N, at most "
                  f"{calls_allowed:.0f} (2 per {poll} s interval): barehub's at most {worst_calls:.1f}, "
                  f"{'met' if worst_calls <= calls_allowed else 'missed'}.", ""]
        lines += details(slurm["setups"], sizes)
    if "local" in results:
        local = results["local"]
        up, bare = local["setups"]["upstream"], local["setups"]["barehub"]
        lines += ["## Local: servers as systemd units (barehub's LocalSpawner vs systemdspawner.SystemdSpawner 1.0.2)",
                  "", "One booted systemd container (testbed/container.py), each server a transient unit in "
                  f"jupyterhub-users.slice, running as its user. Idle window: "
                  f"{local.get('idle_s') or results['idle_s']:.0f} s; barehub at commit "
                  f"{local.get('commit') or results.get('commit', '?')}.",
                  "",
                  "| N | hub CPU s/min: upstream | barehub | barehub/upstream | API p99 ms: upstream | barehub |",
                  "|---|---|---|---|---|---|"]
        for n in sizes:
            u, b = up[n], bare[n]
            lines.append(f"| {n} | {u['idle_hub_cpu_s_per_min']:.2f} | {b['idle_hub_cpu_s_per_min']:.2f} | "
                         f"{ratio(b['idle_hub_cpu_s_per_min'], u['idle_hub_cpu_s_per_min'])} | "
                         f"{u['api']['p99_ms']:.0f} | {b['api']['p99_ms']:.0f} |")
        cpu_ratio = bare[sizes[-1]]["idle_hub_cpu_s_per_min"] / up[sizes[-1]]["idle_hub_cpu_s_per_min"]
        lines += ["", f"Target: hub CPU at {sizes[-1]} idle servers at most 1/5 of upstream's: {cpu_ratio:.3f}x, "
                      f"{'met' if cpu_ratio <= 0.2 else 'missed'}.", ""]
        if all("systemctl_calls" in bare[n] for n in sizes):
            lines += ["One shared poll's call for all N units, CPU ms per call (mean of 5, with the N units running): "
                      "the old `systemctl show -p ... UNIT...` (one GetAll of every property per unit; barehub's "
                      "shared poll at 3fbb7b6) against `systemctl list-units --all ... UNIT.service...` (one "
                      "ListUnitsByPatterns), in systemctl itself (counted in the hub's cgroup) and in systemd "
                      "(init.scope's cgroup, not counted above). A shared poll makes up to 4 such calls a minute.", "",
                      "| N | show: systemctl | systemd | list-units: systemctl | systemd |", "|---|---|---|---|---|"]
            for n in sizes:
                c = bare[n]["systemctl_calls"]
                ms = [f"{c[k][p]:.0f}" if c[k][p] is not None else "-" for k in ("show", "list-units")
                      for p in ("systemctl_ms", "systemd_ms")]
                lines.append(f"| {n} | " + " | ".join(ms) + " |")
            lines += [""]
        lines += details(local["setups"], sizes)
    p99s = [results[k]["setups"][s][n]["api"]["p99_ms"] for k in ("slurm", "local") if k in results
            for s in ("upstream", "barehub") for n in sizes]
    bare_p99 = [results[k]["setups"]["barehub"][n]["api"]["p99_ms"] for k in ("slurm", "local") if k in results
                for n in sizes]
    lines += [f"Target: hub API p99 under the servers' activity reports below 100 ms: barehub's worst "
              f"{max(bare_p99):.0f} ms, {'met' if max(bare_p99) < 100 else 'missed'} (every row: "
              f"{min(p99s):.0f}-{max(p99s):.0f} ms).", ""]
    path.write_text("\n".join(lines))


def details(setups: dict, sizes: list[str]) -> list[str]:
    lines = ["| setup | N | start (s) | reports/min | refused | hub CPU s/min under reports | API p50 ms | "
             "API p99 ms | API max ms | API failed |", "|---|---|---|---|---|---|---|---|---|---|"]
    for setup, rows in setups.items():
        for n in sizes:
            r = rows[n]
            lines.append(f"| {setup} | {n} | {r['start_s']:.0f} | {r['reports_per_min']:.0f} | "
                         f"{r['reports_refused']} | {r['reports_hub_cpu_s_per_min']:.2f} | {r['api']['p50_ms']:.1f} | "
                         f"{r['api']['p99_ms']:.1f} | {r['api']['max_ms']:.0f} | {r['api']['failed']} |")
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
