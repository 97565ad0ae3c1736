"""barehub against what an admin would otherwise run, on one machine, in one run.

Setups, one at a time, in one booted systemd container (see testbed/container.py):
  barehub          this repository, installed by bootstrap.py (pip backend, local wheelhouse)
  stock-chp        the same JupyterHub, configurable-http-proxy (npm) started by the hub, configured by hand
  traefik-default  the same hub, jupyterhub-traefik-proxy starting traefik at traefik's default 2 s throttle
All serve the same lightweight single-user server (bench/tinyserver.py). Writes bench/results.md and .json.
Run: sudo bench/run   (needs what tests/run installs)
Only the class rows (100 and 200 at once), the setups taking turns to go first in each round, into results.json's "class":
     sudo bench/run --only class [--setups barehub,stock-chp] [--rounds 10] [--counts 100,200]
The class as each setup ships (its own spawner, real accounts), into bench/shipped-results.md and .json:
     sudo bench/run --only class --as-shipped --rounds 3 --counts 200
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from testbed.container import Container  # noqa: E402
from testbed.web import RequestLoop, status_code, wait_until  # noqa: E402
from testbed.wheelhouse import CACHE, build_wheelhouse  # noqa: E402
from barehub.hub_config import api_password_hash  # noqa: E402
from barehub.base.paths import Paths  # noqa: E402  (the layout's one owner)

BAREHUB = Paths(Path("/opt/barehub"))  # the bench's install, inside the container
ENV_PY = str(BAREHUB.python)
SETUPS = {
    "barehub": {"public": "http://127.0.0.1:28080", "hub": "http://127.0.0.1:28080", "kind": "barehub",
                "units": ["jupyterhub.service", "jupyterhub-proxy.service"]},
    "stock-chp": {"public": "http://127.0.0.1:28180", "hub": "http://127.0.0.1:28180", "kind": "chp",
                  "units": ["bench-stock.service"], "config": "/mnt/bench/configs/stock_chp.py",
                  "state": "/var/lib/bench-stock"},
    "traefik-default": {"public": "http://127.0.0.1:28280", "hub": "http://127.0.0.1:28280",
                        "kind": "traefik-default", "units": ["bench-traefik.service"],
                        "config": "/mnt/bench/configs/traefik_default.py", "state": "/var/lib/bench-traefik"},
}


PROCESS_LABELS = {"python": "hub (python)", "python3": "hub (python)", "python3.11": "hub (python)",
                  "node": "configurable-http-proxy (node)", "configurable-ht": "configurable-http-proxy (node)",
                  "traefik": "traefik"}  # by ps's comm (15 characters)


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def ok(url: str) -> bool:
    return status_code(url) == 200


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"n": len(values), "median": statistics.median(values), "min": values[0], "max": values[-1]}


class Bench:
    def __init__(self, box: Container, token: str):
        self.box, self.token = box, token

    def inside(self, command: str, **args) -> dict:
        out = self.box.run([ENV_PY, "/mnt/bench/inside.py", command, json.dumps(args)], timeout=3600).stdout
        return json.loads(out.strip().splitlines()[-1])

    def proxy_config(self, name: str) -> dict:
        if name == "stock-chp":
            return {"ConfigurableHTTPProxy": {"api_url": "http://127.0.0.1:28181", "auth_token": self.token,
                                              "should_start": False}}
        if name == "traefik-default":
            return {"TraefikProxy": {"traefik_api_url": "http://127.0.0.1:28281", "traefik_api_username": "bench",
                                     "traefik_api_password": self.token, "should_start": False,
                                     "traefik_entrypoint": "http"},
                    "TraefikFileProviderProxy": {"dynamic_config_file": "/var/lib/bench-traefik/rules.toml"}}
        # as barehub.hub_config.apply_base sets it: the class writes the API's route from this config
        password = self.box.run(f"cat {BAREHUB.traefik_api_password}").stdout.strip()
        return {"TraefikProxy": {"traefik_api_url": "http://127.0.0.1:8099", "traefik_api_username": "jupyterhub",
                                 "traefik_api_password": password, "should_start": False,
                                 "traefik_api_hashed_password": api_password_hash(password),
                                 "traefik_entrypoint": "web", "traefik_api_entrypoint": "traefik"},
                "TraefikFileProviderProxy": {"dynamic_config_file": str(BAREHUB.traefik_rules)},
                "BarehubTraefikProxy": {"routes_file": str(BAREHUB.proxy_routes),
                                        "staging_dir": str(BAREHUB.traefik_staging_dir)}}

    def start(self, name: str) -> float:
        """Seconds from starting the hub's unit until /hub/health answers through the proxy."""
        setup = SETUPS[name]
        start = time.monotonic()
        if name == "barehub":
            self.box.run("systemctl start jupyterhub")
        else:
            # the hub env first on PATH: jupyterhub-traefik-proxy starts `traefik` by name
            self.box.run(f"mkdir -p {setup['state']} && systemd-run --collect --unit={setup['units'][0]} -p KillMode=process "
                         f"--setenv=PATH=/opt/barehub/conda/bin:/usr/bin:/bin "
                         f"--working-directory={setup['state']} {ENV_PY} -m jupyterhub -f {setup['config']}")
        wait_until(lambda: ok(f"{setup['public']}/hub/health"), 120)
        return time.monotonic() - start

    def stop(self, name: str) -> None:
        unit = SETUPS[name]["units"][0]
        # KillMode=process leaves user servers (and a hub-started proxy) in the unit: end them too
        self.box.run(f"systemctl stop {unit}; systemctl kill --kill-whom=all --signal=SIGKILL {unit}; "
                     f"sleep 0.5; systemctl reset-failed {unit}", check=False)

    def memory(self, name: str) -> dict[str, float]:
        """Resident memory (MB) at idle of each process in the setup's units (hub, proxy, hub services).
        The cgroup column comes last: ps cuts it short when another column follows."""
        per: dict[str, float] = {}
        for line in self.box.run("ps -eo rss=,comm=,cgroup=").stdout.splitlines():
            rss, comm, cgroup = line.split(None, 2)
            if any(cgroup.strip().endswith(f"/{unit}") for unit in SETUPS[name]["units"]):
                label = PROCESS_LABELS.get(comm, comm)
                per[label] = round(per.get(label, 0) + int(rss) / 1024, 1)
        return per

    def disruption(self, name: str, action: str) -> dict:
        """Failed requests and the slowest answer, to /hub and to a user server, around a hub restart."""
        setup = SETUPS[name]
        requests.post(f"{setup['hub']}/hub/api/users/steady", headers={"Authorization": f"token {self.token}"})
        requests.post(f"{setup['hub']}/hub/api/users/steady/server", headers={"Authorization": f"token {self.token}"})
        wait_until(lambda: ok(f"{setup['public']}/user/steady/"), 60)
        with RequestLoop(f"{setup['public']}/hub/login") as hub, \
                RequestLoop(f"{setup['public']}/user/steady/") as server:
            time.sleep(1)
            unit = setup["units"][0]
            pid = self.box.main_pid(unit)
            self.box.run(f"systemctl {action} {unit}", timeout=300)
            if action == "restart":  # a reload restarts the hub in place and returns once it answers
                wait_until(lambda: self.box.main_pid(unit) not in (0, pid) and ok(f"{setup['public']}/hub/health"),
                           120, 0.1)
            time.sleep(3)
        requests.delete(f"{setup['hub']}/hub/api/users/steady/server",
                        headers={"Authorization": f"token {self.token}"})
        return {key: {"ok": loop.ok, "failed": loop.failed, "slowest_s": round(loop.slowest, 2)}
                for key, loop in (("hub", hub), ("server", server))}

    def process_pids(self, name: str) -> dict[str, int]:
        """The hub's and the proxy's PIDs (the servers are the hub's children in every setup)."""
        if name == "barehub":
            return {"hub": self.box.main_pid("jupyterhub.service"), "proxy": self.box.main_pid("jupyterhub-proxy.service")}
        hub = self.box.main_pid(SETUPS[name]["units"][0])
        pids = {"hub": hub}
        for line in self.box.run(f"ps -o pid=,comm= --ppid {hub}").stdout.splitlines():
            pid, comm = line.split(None, 1)
            if PROCESS_LABELS.get(comm.strip(), "hub").split()[0] in ("configurable-http-proxy", "traefik"):
                pids["proxy"] = int(pid)
        return pids

    def class_round(self, name: str, counts: list[int], round_: int, shipped: bool = False) -> dict:
        """One round of a class at 9:00 from a freshly started hub: each count spawned at once, with the CPU
        the hub, the proxy and the machine spent meanwhile, and (barehub) how many rules files traefik got.
        shipped: each setup's own spawner for real accounts (see SHIPPED), the users following their spawn as the
        spawn-pending page does, and what /hub/api answered meanwhile."""
        setup = SETUPS[name]
        self.stop(name)
        time.sleep(1)
        self.start(name)
        time.sleep(3)
        r = {}
        for count in counts:
            extra = {"rules_file": str(BAREHUB.traefik_rules)} if name == "barehub" else {}
            if shipped:  # the same accounts every round (made once: shipped_accounts)
                extra.update(follow="progress", probe=True)
            prefix = f"k{count}x" if shipped else f"k{count}r{round_}x"
            r[f"spawn_{count}"] = self.inside("spawns", count=count, repeat=1, prefix=prefix,
                                              hub=setup["hub"], public=setup["public"], token=self.token,
                                              pids=self.process_pids(name), **extra)
            log(f"{name}: round {round_ + 1}, {count} at once: all reachable after "
                f"{r[f'spawn_{count}']['latency'].get('max')} s, {r[f'spawn_{count}']['errors']} errors, "
                f"cpu {r[f'spawn_{count}'].get('cpu_s')}, tcp {r[f'spawn_{count}'].get('tcp')}, rules writes {r[f'spawn_{count}'].get('rules_writes')}")
        self.stop(name)
        return r

    def measure(self, name: str) -> dict:
        setup = SETUPS[name]
        r: dict = {}
        starts = []
        for _ in range(3):
            self.stop(name)
            time.sleep(1)
            starts.append(self.start(name))
        r["hub_cold_start_s"] = summary(starts)
        log(f"{name}: cold start {r['hub_cold_start_s']}")
        time.sleep(3)
        r["idle_memory_by_process_mb"] = self.memory(name)
        r["idle_memory_mb"] = round(sum(r["idle_memory_by_process_mb"].values()), 1)
        common = dict(hub=setup["hub"], public=setup["public"], token=self.token)
        for count, repeat in ((1, 20), (50, 2), (100, 2), (200, 1)):  # 200: a class at 9:00
            r[f"spawn_{count}"] = self.inside("spawns", count=count, repeat=repeat, prefix=f"c{count}x", **common)
            log(f"{name}: {count} at once: median {r[f'spawn_{count}']['latency'].get('median')}, "
                f"all reachable after {r[f'spawn_{count}']['latency'].get('max')} s")
        config = json.dumps(self.proxy_config(name))
        auth = {"Authorization": f"token {self.token}"}
        requests.post(f"{setup['hub']}/hub/api/users/ovh", headers=auth)
        requests.post(f"{setup['hub']}/hub/api/users/ovh/server", headers=auth)
        wait_until(lambda: ok(f"{setup['public']}/user/ovh/"), 60)
        proxied = f"{setup['public']}/user/ovh"
        r["overhead"] = self.inside("overhead", kind=setup["kind"], config=config, routespec="/user/ovh/",
                                    proxied=proxied, n=300)
        for background, n in ((1000, 20), (5000, 10)):
            r[f"routes_{background}"] = self.inside("routes", kind=setup["kind"], config=config,
                                                    background=background, n=n, proxied=proxied)
            log(f"{name}: {background} routes: add {r[f'routes_{background}']['add']}")
        if name == "stock-chp":  # barehub's traefik still runs: the option of an in-memory router behind it
            r["chp_behind_traefik"] = self.inside(
                "behind_traefik", chp_config=config, traefik_config=json.dumps(self.proxy_config("barehub")),
                background=5000, routespec="/user/ovh/", chp_public=setup["public"],
                traefik_public=SETUPS["barehub"]["public"], requests=300)
        requests.delete(f"{setup['hub']}/hub/api/users/ovh/server", headers=auth)
        actions = ["restart", "reload"] if name == "barehub" else ["restart"]
        if name == "barehub":  # servers as units, as shipped: they outlive the hub (configs/units.py)
            self.box.run(f"id steady || useradd --create-home steady; "
                         f"cp /mnt/bench/configs/units.py {BAREHUB.config_d}/91-bench-units.py && "
                         "systemctl reload jupyterhub", timeout=300)
        for action in actions:
            r[f"{action}_disruption"] = self.disruption(name, action)
            log(f"{name}: {action} {r[f'{action}_disruption']}")
        self.stop(name)
        return r


# A class as each setup ships: barehub's servers as systemd units (its LocalSpawner, configs/units.py), stock
# JupyterHub's as children of the hub that switch to the user (LocalProcessSpawner, configs/stock_chp_shipped.py),
# both for real accounts. The plain class rows give every setup SimpleLocalProcessSpawner, to compare hub and proxy.
SHIPPED = {"barehub": "units.py", "stock-chp": "stock_chp_shipped.py"}


def shipped_accounts(box: Container, counts: list[int]) -> None:
    """The class's accounts (k200x0x0 ...), as the names class_round(shipped=True) spawns, and barehub's spawner."""
    names = " ".join(f"k{count}x0x{i}" for count in counts for i in range(count))
    box.run(f"for u in {names}; do id -u $u >/dev/null 2>&1 || useradd --create-home $u; done", timeout=600)
    box.run(f"cp /mnt/bench/configs/{SHIPPED['barehub']} {BAREHUB.config_d}/91-bench-units.py && "
            "systemctl restart jupyterhub")
    SETUPS["stock-chp"]["config"] = f"/mnt/bench/configs/{SHIPPED['stock-chp']}"


def arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--only", choices=["class"], help="only the class rows (N at once), merged into results.json")
    parser.add_argument("--setups", default="barehub,stock-chp", help="with --only class: comma-separated setups")
    # 10: on this shared 2-core machine one setup's rounds of 200 spread 15.1-19.3 s (its speed drifts by a fifth
    # between rounds), so the medians of 3, and then of 5, rounds swapped places between runs. The setups take turns
    # going first (a round's first setup starts right after install or after the other's servers were killed), so
    # an even number gives each the same share of both places.
    parser.add_argument("--rounds", type=int, default=10, help="with --only class: rounds per setup")
    parser.add_argument("--counts", default="100,200", help="with --only class: servers spawned at once")
    parser.add_argument("--as-shipped", action="store_true",
                        help="with --only class: each setup's own spawner for real accounts (bench/shipped-results.md)")
    args = parser.parse_args(argv)
    args.setups = args.setups.split(",")
    args.counts = [int(n) for n in args.counts.split(",")]
    unknown = set(args.setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown setups: {', '.join(sorted(unknown))}")
    return args


def main(argv: list[str]) -> int:
    if os.geteuid() != 0:
        print("bench: run as root (it boots a systemd container)", file=sys.stderr)
        return 1
    args = arguments(argv)
    chp = CACHE / "chp"
    if not (chp / "node_modules" / ".bin" / "configurable-http-proxy").exists():
        chp.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(chp), "--no-audit", "--no-fund",
                        "configurable-http-proxy@5.3.0"], check=True)
    wheelhouse = build_wheelhouse(REPO, CACHE)
    box = Container(f"barehub-bench-{os.getpid()}", {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse",
                                                     str(REPO / "bench"): "/mnt/bench", str(chp): "/mnt/chp"},
                    Path("/tmp/barehub-bench-console.log"))
    box.boot()
    token = secrets.token_hex(16)
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}}
    try:
        box.run(f"mkdir -p /etc/bench && echo {token} > /etc/bench/token && chmod 600 /etc/bench/token")
        start = time.monotonic()
        box.run("/usr/bin/python3 /mnt/src/bootstrap.py --wheelhouse /mnt/wheelhouse --http-port 28080", timeout=900)
        boot_s = time.monotonic() - start
        box.run("cp /mnt/bench/configs/common.py /opt/barehub/jupyterhub_config.d/90-bench.py && "
                "systemctl restart jupyterhub")
        if args.only == "class":
            class_results = {"date": time.strftime("%Y-%m-%d"), "rounds": args.rounds, "counts": args.counts,
                             "first": [], **{name: [] for name in args.setups}}
            if args.as_shipped:
                shipped_accounts(box, args.counts)
            for round_ in range(args.rounds):
                order = args.setups if round_ % 2 == 0 else args.setups[::-1]
                class_results["first"].append(order[0])
                for name in order:
                    class_results[name].append(Bench(box, token).class_round(name, args.counts, round_,
                                                                             args.as_shipped))
        else:
            start = time.monotonic()
            box.run("/usr/bin/python3 -m venv /tmp/bare && /tmp/bare/bin/pip install -q --no-index --find-links "
                    "/mnt/wheelhouse --require-hashes --only-binary=:all: -r /mnt/src/requirements.lock",
                    timeout=900)
            results["bootstrap_vs_pip_s"] = {"bootstrap_full_install": round(boot_s, 1),
                                             "bare_pip_install_same_set": round(time.monotonic() - start, 1)}
            results["bare_server_start"] = Bench(box, token).inside(
                "bare_start", tinyserver="/mnt/bench/tinyserver.py", repeat=10)
            for name in SETUPS:
                log(f"measuring {name}")
                results[name] = Bench(box, token).measure(name)
                if name == "stock-chp":
                    box.run("systemctl stop jupyterhub-proxy", check=False)
    finally:
        box.stop()
    if args.only == "class" and args.as_shipped:
        from bench.report import save, write_shipped_report

        save(class_results, "shipped-results", write_shipped_report)
        return 0
    if args.only == "class":
        return save_class(class_results)
    from bench.report import save, write_report

    save(results, "results", write_report)
    return 0


def save_class(class_results: dict) -> int:
    """The class rounds replace results.json's "class" (the rest of it, and so of results.md, stays)."""
    from bench.report import save, write_report

    results = json.loads((REPO / "bench" / "results.json").read_text())
    results["class"] = class_results
    save(results, "results", write_report)
    return 0


if __name__ == "__main__":
    shutil.which("npm") or sys.exit("bench: npm is needed for configurable-http-proxy")
    sys.exit(main(sys.argv[1:]))
