"""Bounded waits and request loops: what a user sees while something restarts."""
from __future__ import annotations

import threading
import time

import requests


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

    def __init__(self, url: str, headers: dict | None = None, timeout: float = 30, post: dict | None = None):
        """`timeout`: how long a request may take before it counts as failed (a browser waits minutes); `post`: a
        JSON body to POST instead of a GET (a request no proxy may send twice)."""
        self.url, self.headers, self.timeout, self.post = url, headers or {}, timeout, post
        self.ok = self.failed = 0
        self.slowest = 0.0
        self.longest_outage = 0.0  # seconds from a failed answer to the next good one
        self.failures: list[str] = []  # the first few failed answers, "HH:MM:SS status body" (for a report)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        down_since = None
        while not self._stop.is_set():
            start = time.monotonic()
            good, what = self._ask()
            if good:
                self.ok += 1
                if down_since is not None:
                    self.longest_outage = max(self.longest_outage, time.monotonic() - down_since)
                    down_since = None
            else:
                self.failed += 1
                down_since = start if down_since is None else down_since
                if len(self.failures) < 10:
                    self.failures.append(f"{time.strftime('%H:%M:%S')} {what}")
            self.slowest = max(self.slowest, time.monotonic() - start)
            time.sleep(0.1)

    def _ask(self) -> tuple[bool, str]:
        try:
            if self.post is None:
                r = requests.get(self.url, headers=self.headers, timeout=self.timeout)
            else:
                r = requests.post(self.url, headers=self.headers, timeout=self.timeout, json=self.post)
        except requests.RequestException as e:
            return False, f"{type(e).__name__}: {e}"[:200]
        return r.status_code == 200, f"{r.status_code} {r.text[:150]!r}"

    def __enter__(self) -> "RequestLoop":
        good, what = self._ask()
        assert good, what  # also primes a server's token cache
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(60)
