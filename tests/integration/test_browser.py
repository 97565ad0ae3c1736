"""The hub as a person sees it, in a real browser (Debian's Chromium through chromedriver, selenium):
login page, a wrong password, login, a limits profile chosen on the spawn page (the shipped local-limits
drop-in), JupyterLab, a notebook cell run as the user, Stop and Start from /hub/home, logout.
Screenshots are kept in test-artifacts/browser/.

Uses the session's install (as test_install.py does), as bob, and leaves bob's server stopped.
"""
from __future__ import annotations

import time

import pytest
from selenium.webdriver.common.by import By

from tests.integration.browser import LAB, Browser, choose_profile, run_cell
from tests.integration.helpers import HUB, MEASUREMENTS, PREFIX, unit_properties

USER, PASSWORD = "bob", "bob-Secret-2"


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


@pytest.fixture
def limits_profiles(container):
    """The shipped local-limits drop-in, as a site copies it."""
    fragment = f"{PREFIX}/jupyterhub_config.d/30-local-limits.py"
    container.run(f"cp /mnt/src/jupyterhub_config.d/local-limits.py {fragment} && systemctl reload {HUB}")
    yield
    container.run(f"rm -f {fragment} && systemctl reload {HUB}")


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

    b.get(f"{base_url}/hub/home")
    b.wait_for_css("#stop")
    b.shot("home-running")
    b.click("#stop")
    b.wait_for(stopped, 60, "server stopped")
    b.shot("home-stopped")
    b.click("#start")
    choose_profile(b, "Small: 1 CPU, 2 GB")
    b.wait_for_css(LAB, 120)
    assert memory_max(container) == 2 * 2**30
    b.shot("started-again")

    b.get(f"{base_url}/hub/home")
    b.wait_for_css("#stop")
    b.click("#stop")  # leave bob's server stopped for the next modules
    b.wait_for(stopped, 60, "server stopped")
    b.get(f"{base_url}/hub/logout")
    b.wait_for_css("#login_submit")
    b.shot("logged-out")
    b.get(f"{base_url}/hub/home")  # the session is gone: back to the login page
    b.wait_for_css("#login_submit")
