"""Small helpers shared by the integration tests."""
from __future__ import annotations

import time

import requests

HUB, PROXY = "jupyterhub.service", "jupyterhub-proxy.service"


def wait_until(predicate, timeout: float, interval: float = 0.2) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def status_code(url: str, **kw) -> int | None:
    try:
        return requests.get(url, timeout=5, **kw).status_code
    except requests.RequestException:
        return None
