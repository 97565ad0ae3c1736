"""A real browser for the tests: Debian's headless Chromium driven by selenium through Debian's
chromedriver (never a downloaded browser). Screenshots are kept as test artifacts.

    with Browser(artifacts_dir) as b:
        b.get(url); b.shot("login"); b.fill({"username": "alice", "password": "..."}); b.click("#login_submit")
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.select import Select

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("BAREHUB_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))
# The machine has no network but the package registries: keep Chromium from calling home.
LAB = ".jp-LabShell"  # JupyterLab, loaded
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,900")


class Browser:
    def __init__(self, name: str, artifacts: Path = ARTIFACTS, accept_certs: bool = False,
                 driver_cmd_prefix: tuple[str, ...] = (), loopback_names: tuple[str, ...] = ()):
        """`name` groups the screenshots; `driver_cmd_prefix` runs chromedriver (and so Chromium) through
        another command, e.g. ("ip", "netns", "exec", NS) to browse from inside a test network namespace;
        `loopback_names` are resolved to 127.0.0.1 by this browser only (the machine's /etc/hosts untouched)."""
        self.loopback_names = loopback_names
        self.dir = artifacts / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.profile = tempfile.mkdtemp(prefix="barehub-chromium-")
        self.accept_certs = accept_certs
        self.driver_cmd_prefix = driver_cmd_prefix
        self.driver: webdriver.Chrome | None = None
        self.shots: list[Path] = []

    def __enter__(self) -> "Browser":
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={self.profile}")
        if self.accept_certs:
            options.add_argument("--ignore-certificate-errors")
        if self.loopback_names:
            options.add_argument("--host-resolver-rules=" + ", ".join(f"MAP {n} 127.0.0.1" for n in self.loopback_names))
        executable = CHROMEDRIVER
        if self.driver_cmd_prefix:
            executable = self._wrapped_driver()
        self.driver = webdriver.Chrome(service=Service(executable_path=executable), options=options)
        self.driver.set_page_load_timeout(60)
        return self

    def _wrapped_driver(self) -> str:
        script = Path(self.profile) / "chromedriver"
        script.write_text("#!/bin/sh\nexec " + " ".join(self.driver_cmd_prefix) + f" {CHROMEDRIVER} \"$@\"\n")
        script.chmod(0o755)
        return str(script)

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:
            self.shot("failure")
        if self.driver:
            self.driver.quit()

    # --- what a person does
    def get(self, url: str) -> None:
        self.driver.get(url)

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            box = self.driver.find_element(By.NAME, name)
            box.clear()
            box.send_keys(value)

    def click(self, css: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).click()

    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    @property
    def url(self) -> str:
        return self.driver.current_url

    def wait_for(self, predicate, timeout: float = 60, what: str = "condition") -> float:
        """Poll `predicate(self)` (bounded) and return the seconds it took."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            try:
                if predicate(self):
                    return time.monotonic() - start
            except WebDriverException:
                pass
            time.sleep(0.25)
        self.shot(f"timeout-{what}")
        raise AssertionError(f"browser: {what} not seen within {timeout} s (at {self.url})")

    def wait_for_css(self, css: str, timeout: float = 60) -> float:
        return self.wait_for(lambda b: b.driver.find_elements(By.CSS_SELECTOR, css), timeout, css)

    def wait_for_text(self, text: str, timeout: float = 60) -> float:
        return self.wait_for(lambda b: text in b.text(), timeout, repr(text))

    def shot(self, label: str) -> Path:
        path = self.dir / f"{len(self.shots) + 1:02d}-{label}.png"
        if self.driver:
            self.driver.save_screenshot(str(path))
            self.shots.append(path)
        return path


def run_cell(b: Browser, code: str) -> str:
    """Open a new notebook from the launcher, run `code` in its first cell, return the cell's output."""
    b.wait_for_css('.jp-LauncherCard[data-category="Notebook"]', 60)
    b.click('.jp-LauncherCard[data-category="Notebook"]')
    b.wait_for_css(".jp-Notebook .jp-Cell .cm-content", 60)
    # like a person, wait for the kernel: a cell run before it is connected is not sent (seen here)
    b.wait_for_text("(ipykernel) | Idle", 60)
    editor = b.driver.find_element(By.CSS_SELECTOR, ".jp-Notebook .jp-Cell .cm-content")
    editor.click()
    editor.send_keys(code)
    editor.send_keys(Keys.SHIFT, Keys.ENTER)
    b.wait_for(lambda b: b.driver.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output"), 90, "cell output")
    return b.driver.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output").text


def choose_profile(b: Browser, label: str) -> None:
    """A spawn page with profiles (the local-limits and Slurm drop-ins' form): pick one, press Start."""
    b.wait_for_css('#spawn_form select[name="profile"]', 60)
    Select(b.driver.find_element(By.CSS_SELECTOR, 'select[name="profile"]')).select_by_visible_text(label)
    b.click('#spawn_form [type="submit"]')
