"""The hub's database: SQLite in state/ (the default) against PostgreSQL (--db-url, Debian's PostgreSQL 15 on the same
machine, over TCP with a password), side by side in one run, in one booted systemd container: the hub's start (from
`systemctl start` until /hub/health answers through traefik, with USERS users in the database) and a server's spawn
(from the API request until the server is ready; bench/tinyserver.py, one at a time). Writes
bench/database-results.md and .json.
Run: sudo .venv-tests/bin/python -m bench.database   (needs what tests/run installs)
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench import log, summary  # noqa: E402  (the benches' own)
from bench.box import HUB, installed  # noqa: E402
from bench.report import save  # noqa: E402
from testbed import postgres  # noqa: E402
from testbed.web import wait_until  # noqa: E402

USERS = 200  # in the database when the hub starts: it loads every user and server
STARTS, SPAWNS = 5, 10
BOOTSTRAP = "/usr/bin/python3 /mnt/src/bootstrap.py --wheelhouse /mnt/wheelhouse --http-port 28080"


def healthy() -> bool:
    try:
        return requests.get(f"{HUB}/hub/health", timeout=2).status_code == 200
    except requests.RequestException:
        return False


def hub_start(box) -> float:
    box.run("systemctl stop jupyterhub")
    start = time.monotonic()
    box.run("systemctl start jupyterhub")
    wait_until(healthy, 120, 0.05)
    return time.monotonic() - start


def spawn(auth: dict, user: str) -> float:
    """Seconds from the API's start request until the hub says the server is ready; then it is stopped."""
    start = time.monotonic()
    requests.post(f"{HUB}/hub/api/users/{user}/server", headers=auth, timeout=120).raise_for_status()
    wait_until(lambda: requests.get(f"{HUB}/hub/api/users/{user}", headers=auth, timeout=30)
               .json()["servers"].get("", {}).get("ready"), 120, 0.05)
    took = time.monotonic() - start
    requests.delete(f"{HUB}/hub/api/users/{user}/server", headers=auth, timeout=120)
    wait_until(lambda: not requests.get(f"{HUB}/hub/api/users/{user}", headers=auth, timeout=30).json()["servers"],
               120)
    return took


def measure(box, auth: dict) -> dict:
    wait_until(healthy, 120)
    names = [f"user{i:03d}" for i in range(USERS)]
    requests.post(f"{HUB}/hub/api/users", headers=auth, json={"usernames": names}, timeout=120).raise_for_status()
    starts = [hub_start(box) for _ in range(STARTS)]
    log(f"hub starts: {[round(s, 2) for s in starts]}")
    spawns = [spawn(auth, names[i]) for i in range(SPAWNS)]
    log(f"spawns: {[round(s, 2) for s in spawns]}")
    return {"hub start": summary(starts), "spawn": summary(spawns)}


def main() -> int:
    if os.geteuid() != 0:
        print("bench: run as root (it boots a systemd container)", file=sys.stderr)
        return 1
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "users": USERS}
    with installed("database") as (box, token):
        auth = {"Authorization": f"token {token}"}
        box.run("systemctl restart jupyterhub")  # with the bench's config
        log("SQLite")
        results["SQLite"] = measure(box, auth)
        postgres.create(box)
        box.run(f"{BOOTSTRAP} --db-url {postgres.URL} --db-password-file {postgres.PASSWORD_FILE}", timeout=900)
        log("PostgreSQL")
        results["PostgreSQL"] = measure(box, auth)
        postgres.stop(box)
    save(results, "database-results", write_report)
    return 0


def write_report(results: dict, path: Path) -> None:
    lines = ["# The hub's database: SQLite against PostgreSQL", "",
             f"Measured {results['machine']['date']} on one machine ({results['machine']['cores']} cores), one run, "
             "barehub installed by bootstrap.py in a booted systemd container, first on SQLite (state/), then on "
             "Debian's PostgreSQL 15 in the same container (TCP on loopback, scram-sha-256), each with "
             f"{results['users']} users in the database. Hub start: `systemctl start` until /hub/health answers "
             "through traefik. Spawn: the API request until the server is ready (bench/tinyserver.py, local "
             "process), one at a time. Re-run: `sudo .venv-tests/bin/python -m bench.database`.", "",
             "| what | SQLite median (min-max) | PostgreSQL median (min-max) | PostgreSQL / SQLite | n |",
             "|---|---|---|---|---|"]
    for what in ("hub start", "spawn"):
        lite, pg = results["SQLite"][what], results["PostgreSQL"][what]
        lines.append(f"| {what} | {lite['median']:.2f} s ({lite['min']:.2f}-{lite['max']:.2f}) | "
                     f"{pg['median']:.2f} s ({pg['min']:.2f}-{pg['max']:.2f}) | "
                     f"{pg['median'] / lite['median']:.2f}x | {lite['n']} |")
    lines.append("")
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
