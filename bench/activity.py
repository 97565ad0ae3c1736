"""The hub's extra load from servers telling it they are working (barehub.server_activity -> POST
/hub/api/users/NAME/work), side by side with JupyterHub's own activity report (POST /hub/api/users/NAME/activity,
what jupyterhub-singleuser sends) at the same rate, and with no report at all. 100 running servers
(bench/tinyserver.py, each reporting with barehub's own reporter), a site timeout of 60 s (so each busy server
reports every 15 s: the worst case; at the default 1 h timeout a busy server reports every 300 s, 20 times less).
The hub's CPU is its own process's (the culler off: it would stop the idle baseline's servers).
Writes bench/activity-results.md and .json.
Run: sudo .venv-tests/bin/python -m bench.activity   (needs what tests/run installs)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.box import CONFIG_D, HUB, installed  # noqa: E402
from bench.report import save  # noqa: E402
from testbed.container import Container  # noqa: E402
from testbed.web import wait_until  # noqa: E402

SERVERS = 100
WINDOW_S = 120
TIMEOUT_S = 60
CONFIG = f'''
from barehub.server_work import RemembersWork
from jupyterhub.spawner import SimpleLocalProcessSpawner


class BenchSpawner(RemembersWork, SimpleLocalProcessSpawner):
    """The simple spawner with barehub's record of a server's work, as barehub's own spawners have it."""


c.JupyterHub.spawner_class = BenchSpawner
c.Barehub.idle_timeout = {TIMEOUT_S}
c.Barehub.idle_culler = False
'''
SWITCH = "/opt/barehub/state/bench-reports"  # tinyserver.py's REPORTS_SWITCH (its log: + ".log")
PHASES = {"no reports": "off", "barehub's work report": "work", "JupyterHub's activity report": "activity"}


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def hub_cpu_s(box: Container) -> float:
    """The hub process's own CPU seconds (utime + stime): not its unit's cgroup, where the tiny servers run too
    (SimpleLocalProcessSpawner) and would count their own reporting."""
    pid = box.main_pid("jupyterhub")
    fields = box.run(f"cat /proc/{pid}/stat").stdout.rsplit(")", 1)[1].split()
    ticks = int(box.run("getconf CLK_TCK").stdout)
    return (int(fields[11]) + int(fields[12])) / ticks


def reports_sent(box: Container, mode: str) -> int:
    out = box.run(f"grep -c '^{mode}$' {SWITCH}.log", check=False).stdout.strip()
    return int(out or 0)


def main() -> int:
    if os.geteuid() != 0:
        print("bench: run as root (it boots a systemd container)", file=sys.stderr)
        return 1
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "servers": SERVERS,
                     "window_s": WINDOW_S, "timeout_s": TIMEOUT_S, "phases": {}}
    with installed("activity") as (box, token):
        box.run(f"cat > {CONFIG_D}/91-activity.py", input=CONFIG)
        box.run(f"echo off > {SWITCH} && : > {SWITCH}.log && systemctl restart jupyterhub")
        wait_until(lambda: requests.get(f"{HUB}/hub/health", timeout=5).status_code == 200, 120)
        auth = {"Authorization": f"token {token}"}
        for i in range(SERVERS):
            requests.post(f"{HUB}/hub/api/users/u{i:03d}", headers=auth, timeout=60)
            requests.post(f"{HUB}/hub/api/users/u{i:03d}/server", headers=auth, timeout=120)
        wait_until(lambda: sum(1 for u in requests.get(f"{HUB}/hub/api/users?state=ready", headers=auth,
                                                         timeout=60).json()) == SERVERS, 600, interval=2)
        log(f"{SERVERS} servers running")
        for label, mode in PHASES.items():
            box.run(f"echo {mode} > {SWITCH}")
            time.sleep(20)  # every server has switched, and sent its first report of the phase
            cpu, sent, start = hub_cpu_s(box), reports_sent(box, mode), time.monotonic()
            time.sleep(WINDOW_S)
            minutes = (time.monotonic() - start) / 60
            results["phases"][label] = {"hub_cpu_s_per_min": (hub_cpu_s(box) - cpu) / minutes,
                                        "reports_per_min": (reports_sent(box, mode) - sent) / minutes,
                                        "refused": reports_sent(box, f"{mode} refused")}
            log(f"{label}: {results['phases'][label]}")
    save(results, "activity-results", write_report)
    return 0


def write_report(results: dict, path: Path) -> None:
    phases = results["phases"]
    base = phases["no reports"]["hub_cpu_s_per_min"]
    lines = [f"# The hub's load from {results['servers']} servers telling it they are working",
             "",
             f"Measured {results['machine']['date']} on one machine ({results['machine']['cores']} cores), one run, "
             f"{results['servers']} running servers (bench/tinyserver.py, each reporting with barehub's own reporter, "
             "barehub.server_activity.HubReporter), barehub installed by bootstrap.py in a booted systemd container, "
             f"a site idle timeout of {results['timeout_s']} s: each busy server reports every "
             f"{results['timeout_s'] // 4} s, the worst case (at the default 1 h timeout, every 300 s: 20 times "
             f"fewer). Hub CPU: the hub process's own, over {results['window_s']} s per row. Re-run: "
             "`sudo .venv-tests/bin/python -m bench.activity`.", "",
             "| every server | hub CPU (s per minute) | reports per minute | hub CPU per report (ms) |",
             "|---|---|---|---|"]
    for label, p in phases.items():
        extra = p["hub_cpu_s_per_min"] - base
        per = f"{extra / p['reports_per_min'] * 1000:.1f}" if p["reports_per_min"] else "-"
        lines.append(f"| {label} | {p['hub_cpu_s_per_min']:.2f} | {p['reports_per_min']:.0f} | {per} |")
    work, activity = phases["barehub's work report"], phases["JupyterHub's activity report"]
    lines += ["", f"Extra hub CPU of barehub's work reports: {work['hub_cpu_s_per_min'] - base:.2f} s per minute "
                  f"({(work['hub_cpu_s_per_min'] - base) / 60 * 100:.1f}% of one CPU) for {work['reports_per_min']:.0f} "
                  f"reports per minute; JupyterHub's own activity report at the same rate: "
                  f"{activity['hub_cpu_s_per_min'] - base:.2f} s per minute. Ratio (barehub / JupyterHub's own): "
                  f"{(work['hub_cpu_s_per_min'] - base) / max(1e-9, activity['hub_cpu_s_per_min'] - base):.2f}x.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
