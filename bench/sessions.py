"""The sessions page with many servers, side by side with what a user has without it: JupyterHub's own home page
(its named-server table) and its own user model (GET /hub/api/users/NAME?include_stopped_servers, what a script
would call). One user with 20 running named servers (bench/tinyserver.py), in one booted systemd container, one
run. Writes bench/sessions-results.md and .json.
Run: sudo .venv-tests/bin/python -m bench.sessions   (needs what tests/run installs)
"""
from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.box import CONFIG_D, HUB, installed  # noqa: E402
from bench.report import save  # noqa: E402
from testbed.web import wait_until  # noqa: E402
from tests.integration.browser import Browser  # noqa: E402

SERVERS = 20
USER = "ada"
ROUNDS_API, ROUNDS_PAGE = 50, 10
NAMED = "c.JupyterHub.allow_named_servers = True\nc.JupyterHub.named_server_limit_per_user = 0\n"


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"n": len(values), "median": statistics.median(values), "p90": values[int(0.9 * (len(values) - 1))],
            "min": values[0], "max": values[-1]}


def timed_get(url: str, headers: dict, rounds: int) -> dict:
    took = []
    for _ in range(rounds):
        start = time.monotonic()
        r = requests.get(url, headers=headers, timeout=60)
        r.raise_for_status()
        took.append(time.monotonic() - start)
    return summary(took)


def page_load(b: Browser, url: str, shown, rounds: int) -> dict:
    """Seconds from navigating to `url` until `shown(b)` (every server on the page)."""
    took = []
    for _ in range(rounds):
        b.get("about:blank")
        start = time.monotonic()
        b.get(url)
        b.wait_for(shown, 60, f"{url} shows {SERVERS} servers")
        took.append(time.monotonic() - start)
    return summary(took)


def cards_shown(b: Browser) -> bool:
    return b.driver.execute_script(
        "return document.body.dataset.sessionsLoaded === 'yes' && "
        "document.querySelectorAll('.bh-card[data-server^=s][data-state=running]').length") == SERVERS


def home_rows_shown(b: Browser) -> bool:
    return b.driver.execute_script(
        "return document.readyState === 'complete' && "
        "document.querySelectorAll('tr.home-server-row[data-server-name]').length") == SERVERS


def main() -> int:
    if os.geteuid() != 0:
        print("bench: run as root (it boots a systemd container)", file=sys.stderr)
        return 1
    results: dict = {"machine": {"cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d")}, "servers": SERVERS}
    with installed("sessions") as (box, token):
        box.run(f"printf '{NAMED}' > {CONFIG_D}/91-named.py && systemctl restart jupyterhub")
        wait_until(lambda: requests.get(f"{HUB}/hub/health", timeout=5).status_code == 200, 120)
        auth = {"Authorization": f"token {token}"}
        requests.post(f"{HUB}/hub/api/users/{USER}", headers=auth, timeout=60)
        for i in range(SERVERS):
            requests.post(f"{HUB}/hub/api/users/{USER}/servers/s{i:02d}", headers=auth, timeout=120)
        wait_until(lambda: len(requests.get(f"{HUB}/hub/api/users/{USER}", headers=auth, timeout=30)
                               .json()["servers"]) == SERVERS and all(
            s["ready"] for s in requests.get(f"{HUB}/hub/api/users/{USER}", headers=auth, timeout=30)
            .json()["servers"].values()), 300)
        log(f"{SERVERS} servers running")
        results["api"] = {
            "barehub sessions (GET /hub/api/users/NAME/sessions)":
                timed_get(f"{HUB}/hub/api/users/{USER}/sessions", auth, ROUNDS_API),
            "JupyterHub's user model (GET /hub/api/users/NAME?include_stopped_servers)":
                timed_get(f"{HUB}/hub/api/users/{USER}?include_stopped_servers", auth, ROUNDS_API),
        }
        with Browser("bench-sessions") as b:
            b.get(f"{HUB}/hub/login")
            b.wait_for_css("#login_submit")
            b.fill({"username": USER, "password": "any"})  # the bench's dummy authenticator
            b.click("#login_submit")
            b.wait_for(lambda b: "/hub/login" not in b.url, 60, "logged in")
            results["page"] = {
                "barehub /hub/sessions: every card shown": page_load(b, f"{HUB}/hub/sessions", cards_shown,
                                                                    ROUNDS_PAGE),
                "JupyterHub /hub/home: every named server's row shown": page_load(b, f"{HUB}/hub/home",
                                                                                 home_rows_shown, ROUNDS_PAGE),
            }
            b.shot("sessions-page-20-servers")
    save(results, "sessions-results", write_report)
    return 0


def write_report(results: dict, path: Path) -> None:
    lines = [f"# The sessions page with {results['servers']} servers, against JupyterHub's own pages",
             "",
             f"Measured {results['machine']['date']} on one machine ({results['machine']['cores']} cores), one run, "
             f"one user with {results['servers']} running named servers (bench/tinyserver.py), barehub installed by "
             "bootstrap.py in a booted systemd container; Chromium (headless) on the same machine. Re-run: "
             "`sudo .venv-tests/bin/python -m bench.sessions`.", "",
             "| what | median | p90 | min-max | n |", "|---|---|---|---|---|"]
    for group in ("api", "page"):
        for label, s in results[group].items():
            lines.append(f"| {label} | {s['median'] * 1000:.1f} ms | {s['p90'] * 1000:.1f} ms | "
                         f"{s['min'] * 1000:.1f}-{s['max'] * 1000:.1f} ms | {s['n']} |")
    api, page = list(results["api"].values()), list(results["page"].values())
    lines += ["", f"Ratios (barehub / JupyterHub's own): API {api[0]['median'] / api[1]['median']:.2f}x, "
                  f"page {page[0]['median'] / page[1]['median']:.2f}x.", ""]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
