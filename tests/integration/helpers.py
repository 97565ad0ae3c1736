"""Small helpers shared by the integration tests."""
from __future__ import annotations

import hashlib
import subprocess
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


def status_code(url: str, **kw) -> int | None:
    try:
        return requests.get(url, timeout=5, **kw).status_code
    except requests.RequestException:
        return None
