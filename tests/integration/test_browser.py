"""The hub as a person sees it, in a real browser (Debian's Chromium through chromedriver, selenium):
login page, a wrong password, login, a limits profile chosen on the spawn page (the shipped local-limits
drop-in), JupyterLab, a notebook cell run as the user, Stop (clean: the server exits on SIGTERM within 5 s) and
Start from /hub/home, the sessions page, logout. Then several named sessions of one user (the shipped
named-servers drop-in), each its own systemd unit, through the REST API as a user calls it with her own token.
Screenshots are kept in test-artifacts/browser/.

Uses the session's install (as test_install.py does), as bob, and leaves bob's servers stopped.
"""
from __future__ import annotations

import contextlib
import json
import time

import pytest
import requests
from selenium.webdriver.common.by import By

from tests.integration.browser import LAB, Browser, choose_profile, run_cell
from tests.integration.helpers import (HUB, MEASUREMENTS, PASSWORD as ALICES_PASSWORD, PASSWORDS, PREFIX, USER as ALICE,
                                       unit_properties, wait_until)
from tests.integration.hubclient import HubUser

USER, PASSWORD = "bob", PASSWORDS["bob"]


@pytest.fixture
def browser():
    with Browser("browser") as b:
        yield b


def log_in(b: Browser, base_url: str, password: str) -> None:
    b.get(f"{base_url}/hub/login")
    b.wait_for_css("#login_submit")
    b.fill({"username": USER, "password": password})
    b.click("#login_submit")


def memory_max(container) -> int:
    return int(unit_properties(container, f"jupyter-{USER}-singleuser", "MemoryMax")["MemoryMax"])


@contextlib.contextmanager
def shipped_drop_in(container, name: str, installed_as: str):
    """A shipped drop-in, copied as a site does, for the block."""
    fragment = f"{PREFIX}/jupyterhub_config.d/{installed_as}"
    container.run(f"cp /mnt/src/jupyterhub_config.d/{name} {fragment} && systemctl reload {HUB}")
    yield
    container.run(f"rm -f {fragment} && systemctl reload {HUB}")


@pytest.fixture
def limits_profiles(container):
    with shipped_drop_in(container, "local-limits.py", "30-local-limits.py"):
        yield


@pytest.fixture
def named_servers(container):
    with shipped_drop_in(container, "named-servers.py", "20-named-servers.py"):
        yield


def unit_gone_cleanly(container, unit: str) -> bool:
    """A server unit that ended well is forgotten by systemd; one killed after TimeoutStopSec stays, failed."""
    shown = unit_properties(container, unit, "LoadState", "ActiveState", "Result")
    return shown["LoadState"] == "not-found" or (shown["ActiveState"] == "inactive" and shown["Result"] == "success")


def stop_was_clean(container, unit: str, since: str) -> None:
    """The unit ended well. The hub's page may say stopped while the unit still ends (JupyterHub answers a stop
    taking over 10 s, slow_stop_timeout, with 202: seen under load), so its end is waited for, at most for the
    unit's TimeoutStopSec (after which systemd would kill it: a failure here)."""
    wait_until(lambda: unit_properties(container, unit, "ActiveState")["ActiveState"] != "deactivating", 25,
               interval=0.5)
    journal = container.run(f"journalctl -q --no-pager -u {unit} --since '{since}'", check=False).stdout
    assert "timed out" not in journal and "SIGKILL" not in journal and "Killing" not in journal, journal[-2000:]
    assert unit_gone_cleanly(container, unit), unit_properties(container, unit, "ActiveState", "Result")


class StopWatch:
    """While a server unit stops: if it is still there after 3 s, its state, its threads and their signals (and
    where each thread waits, when a py-spy binary is at /mnt/src/.diag, as it was to find barehub.server_exit's
    cause) are kept in test-artifacts/browser/stop-*.txt for whoever debugs it."""

    def __init__(self, container, unit: str, label: str):
        import threading
        self.container, self.unit, self.label = container, unit, label
        self.thread = threading.Thread(target=self.watch, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(30)

    def watch(self) -> None:
        time.sleep(3)
        state = self.container.run(f"systemctl is-active {self.unit}", check=False).stdout.strip()
        if state not in ("active", "deactivating"):
            return
        spy = "/mnt/src/.diag/py_spy-0.4.3.data/scripts/py-spy"
        pid = self.container.run(f"systemctl show -p MainPID --value {self.unit}", check=False).stdout.strip()
        report = self.container.run(
            f"systemctl status --no-pager -l {self.unit}; echo; ps -L -o pid,lwp,stat,wchan:30,cmd -p {pid}; "
            f"grep -E 'State|SigBlk|SigIgn|SigCgt' /proc/{pid}/status; test -x {spy} && {spy} dump --pid {pid}",
            check=False, timeout=60)
        from tests.integration.browser import ARTIFACTS
        (ARTIFACTS / "browser").mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "browser" / f"stop-{self.label}.txt").write_text(report.stdout + report.stderr)


def stopped(b: Browser) -> bool:
    """/hub/home once the server is stopped: no visible Stop button, Start says so."""
    stop_buttons = [e for e in b.driver.find_elements(By.CSS_SELECTOR, "#stop") if e.is_displayed()]
    return not stop_buttons and "Start My Server" in b.driver.find_element(By.CSS_SELECTOR, "#start").text


def test_a_person_logs_in_works_in_jupyterlab_stops_starts_and_logs_out(container, base_url, browser,
                                                                       limits_profiles):
    b = browser
    log_in(b, base_url, "wrong-password")
    b.wait_for_text("Invalid username or password")
    b.shot("wrong-password")

    start = time.monotonic()
    log_in(b, base_url, PASSWORD)
    b.wait_for_css('#spawn_form select[name="profile"]', 60)
    b.shot("spawn-page-profiles")
    choose_profile(b, "Medium: 2 CPUs, 8 GB")
    b.wait_for_css(LAB, 120)
    MEASUREMENTS["browser: login, a profile chosen, JupyterLab shown (s)"] = round(time.monotonic() - start, 1)
    assert f"/user/{USER}/lab" in b.url
    assert memory_max(container) == 8 * 2**30  # the profile's limit, on the user's server unit
    b.shot("jupyterlab")
    assert run_cell(b, "import getpass; print(getpass.getuser())").strip() == USER
    b.shot("cell-ran-as-the-user")

    b.get(f"{base_url}/hub/sessions")  # the sessions page: a local server, no Slurm fields
    card = '#session-default[data-state="running"]'
    b.wait_for_css(card, 30)
    assert not b.driver.find_element(By.CSS_SELECTOR, "#session-default .bh-job").is_displayed()
    assert b.driver.find_element(By.CSS_SELECTOR, "#session-default .bh-profile").text == "medium"  # its key
    b.shot("sessions-page-local-server")
    # keep until a time typed on the card (the browser's own zone): the card and the API say it; then no longer
    until = b.driver.execute_script(
        "const input = document.querySelector('#session-default .bh-keep-until');"
        "const local = new Date(Date.now() + 2 * 3600e3 - new Date().getTimezoneOffset() * 60e3);"
        "input.value = local.toISOString().slice(0, 16);"
        "return new Date(input.value).toISOString().replace('.000Z', 'Z');")
    b.click("#session-default .bh-keep-set")
    b.wait_for(lambda b: b.driver.find_element(By.CSS_SELECTOR, "#session-default .bh-kept").text, 30, "kept shown")
    bobs = HubUser(base_url, USER, PASSWORD)
    assert bobs.login().status_code == 302
    assert bobs.api("GET", f"users/{USER}/sessions/").json()["keep_until"] == until
    b.shot("sessions-page-kept-until")
    b.click("#session-default .bh-keep-clear")
    b.wait_for(lambda b: not b.driver.find_element(By.CSS_SELECTOR, "#session-default .bh-kept").is_displayed(),
               30, "no longer kept")
    assert bobs.api("GET", f"users/{USER}/sessions/").json()["keep_until"] == ""

    since = container.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    b.get(f"{base_url}/hub/home")
    b.wait_for_css("#stop")
    b.shot("home-running")
    with StopWatch(container, f"jupyter-{USER}-singleuser", "first"):
        b.click("#stop")  # JupyterLab and its kernel's websocket were open in this browser a moment ago
        took = b.wait_for(stopped, 60, "server stopped")
    b.shot("home-stopped")
    MEASUREMENTS["browser: Stop pressed with JupyterLab's kernel open, server stopped after (s)"] = round(took, 1)
    stop_was_clean(container, f"jupyter-{USER}-singleuser", since)
    assert took < 5
    b.click("#start")
    choose_profile(b, "Small: 1 CPU, 2 GB")
    b.wait_for_css(LAB, 120)
    assert memory_max(container) == 2 * 2**30
    b.shot("started-again")

    since = container.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    b.get(f"{base_url}/hub/home")
    b.wait_for_css("#stop")
    with StopWatch(container, f"jupyter-{USER}-singleuser", "second"):
        b.click("#stop")  # leave bob's server stopped for the next modules
        took = b.wait_for(stopped, 60, "server stopped")
    MEASUREMENTS["browser: Stop pressed right after JupyterLab loaded, server stopped after (s)"] = round(took, 1)
    stop_was_clean(container, f"jupyter-{USER}-singleuser", since)
    assert took < 5
    b.get(f"{base_url}/hub/logout")
    b.wait_for_css("#login_submit")
    b.shot("logged-out")
    b.get(f"{base_url}/hub/home")  # the session is gone: back to the login page
    b.wait_for_css("#login_submit")


def test_a_user_runs_named_sessions_each_its_own_unit_stops_one_alone_and_sees_only_her_own(container, base_url,
                                                                                          named_servers):
    bob = HubUser(base_url, USER, PASSWORD)
    assert bob.login().status_code == 302
    for name in ("first", "second"):
        assert bob.api("POST", f"users/{USER}/servers/{name}", json={}).status_code in (201, 202)

    def sessions() -> dict:
        r = bob.api("GET", f"users/{USER}/sessions", timeout=30)
        r.raise_for_status()
        return {s["name"]: s for s in r.json()["sessions"]}

    wait_until(lambda: all(sessions().get(n, {}).get("state") == "running" for n in ("first", "second")), 120)
    uid = container.run(f"id -u {USER}").stdout.strip()
    for name in ("first", "second"):
        unit = f"jupyter-{USER}-{name}"
        assert unit_properties(container, unit, "ActiveState", "Slice")["ActiveState"] == "active"
        assert requests.get(f"{base_url}/user/{USER}/{name}/api/status", headers=bob.auth(), timeout=30).status_code \
            == 200
        runtime = container.run(f"stat -c '%u %a' /run/jupyterhub/users/*-{name}").stdout.split()
        assert runtime == [uid, "700"], runtime  # its own runtime directory, the user's, private
    assert sessions()["first"]["kind"] == "local" and sessions()["first"]["job_id"] == ""
    status = json.loads(container.run("barehub status --json", check=False).stdout)
    assert {f"{USER}/first", f"{USER}/second"} <= set(status["running_servers"])
    assert {f"jupyter-{USER}-first.service", f"jupyter-{USER}-second.service"} <= \
        {u["unit"] for u in status["server_units"]}

    # another user, with her own token, sees none of it
    alice = HubUser(base_url, ALICE, ALICES_PASSWORD)
    assert alice.login().status_code == 302
    nothing = alice.api("GET", f"users/{USER}/sessions/nosuchserver", timeout=30)
    for path in ("sessions", "sessions/first", "sessions/"):
        r = alice.api("GET", f"users/{USER}/{path}", timeout=30)
        assert r.status_code in (403, 404) and "running" not in r.text, (path, r.status_code, r.text[:300])
        if path == "sessions/first":  # the same answer as for a server bob does not have: not even its existence
            assert (r.status_code, r.text) == (nothing.status_code, nothing.text.replace("nosuchserver", "first"))
    anonymous = requests.get(f"{base_url}/hub/api/users/{USER}/sessions/first", timeout=30, allow_redirects=False)
    assert anonymous.status_code == 403 and "authentication required" in anonymous.json()["message"]
    own = alice.api("GET", f"users/{ALICE}/sessions", timeout=30).json()["sessions"]
    assert [s["name"] for s in own] == [""]

    since = container.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    start = time.monotonic()
    assert bob.api("DELETE", f"users/{USER}/servers/first").status_code in (202, 204)
    wait_until(lambda: sessions()["first"]["state"] == "ended", 30, interval=0.2)
    MEASUREMENTS["named sessions: one stopped through the API after (s)"] = round(time.monotonic() - start, 1)
    stop_was_clean(container, f"jupyter-{USER}-first", since)
    assert sessions()["first"]["why"] == "stopped"
    assert sessions()["second"]["state"] == "running"  # the other one did not notice
    assert requests.get(f"{base_url}/user/{USER}/second/api/status", headers=bob.auth(), timeout=30).status_code == 200

    assert bob.api("DELETE", f"users/{USER}/servers/first", json={"remove": True}).status_code in (202, 204)
    wait_until(lambda: "first" not in sessions(), 30)
    assert bob.api("DELETE", f"users/{USER}/servers/second", json={"remove": True}).status_code in (202, 204)
    wait_until(lambda: "second" not in sessions(), 30)
    assert container.run(f"systemctl is-active jupyter-{USER}-second", check=False).stdout.strip() != "active"
