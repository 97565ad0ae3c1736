"""Small helpers shared by the integration tests."""
from __future__ import annotations

import hashlib
import subprocess
import threading
import time
from pathlib import Path

import requests

SYSTEM_PYTHON = "/usr/bin/python3"  # user servers cannot exec a python under /root (0700)


def build_wheelhouse(repo: Path, cache: Path) -> Path:
    """bootstrap.py --make-wheelhouse, as an air-gapped site would run it; downloads are cached."""
    lock_hash = hashlib.sha256((repo / "requirements.lock").read_bytes()).hexdigest()[:16]
    target = cache / f"wheelhouse-{lock_hash}"
    for old in target.glob("barehub-*.whl"):
        old.unlink()  # always this checkout's code
    proc = subprocess.run([SYSTEM_PYTHON, str(repo / "bootstrap.py"), "--make-wheelhouse", str(target)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target

HUB, PROXY = "jupyterhub.service", "jupyterhub-proxy.service"


def wait_until(predicate, timeout: float, interval: float = 0.2) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def status_code(url: str, timeout: float = 5, **kw) -> int | None:
    try:
        return requests.get(url, timeout=timeout, **kw).status_code
    except requests.RequestException:
        return None


class RequestLoop:
    """GETs `url` every 0.1 s in the background while the block runs, counting answers other than 200
    and the slowest answer: what users see while something restarts. Bounded by the block."""

    def __init__(self, url: str, headers: dict | None = None):
        self.url, self.headers = url, headers or {}
        self.ok = self.failed = 0
        self.slowest = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            if status_code(self.url, headers=self.headers, timeout=30) == 200:
                self.ok += 1
            else:
                self.failed += 1
            self.slowest = max(self.slowest, time.monotonic() - start)
            time.sleep(0.1)

    def __enter__(self) -> "RequestLoop":
        assert status_code(self.url, headers=self.headers) == 200  # also primes a server's token cache
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)
