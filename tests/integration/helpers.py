"""The one place integration tests take their shared helpers and constants from.

The machinery itself (container, request loops, wheelhouse) lives in testbed/, which bench/ uses too.
"""
from __future__ import annotations

import json
from pathlib import Path

from testbed.container import Container  # noqa: F401 (re-exported for the tests)
from testbed.web import RequestLoop, status_code, wait_until  # noqa: F401
from testbed.wheelhouse import CACHE, SYSTEM_PYTHON, build_wheelhouse  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
HUB, PROXY = "jupyterhub.service", "jupyterhub-proxy.service"
HTTP_PORT = 28080
PREFIX = "/opt/barehub"
USER, PASSWORD = "alice", "alice-Secret-1"
MEASUREMENTS: dict[str, float | str] = {}  # printed at the end of the run (conftest)


def bootstrap_cmd(*extra: str) -> str:
    """bootstrap.py as the tests' site runs it: pip backend from the offline wheelhouse."""
    return " ".join([SYSTEM_PYTHON, "/mnt/src/bootstrap.py", "--env-backend", "pip",
                     "--wheelhouse", "/mnt/wheelhouse", "--http-port", str(HTTP_PORT), *extra])


def hub_run(container, prefix: str = PREFIX) -> dict:
    """What the running hub recorded about itself (state/hub-run.json): pid, start time, config set, base_url."""
    return json.loads(container.run(f"cat {prefix}/state/hub-run.json").stdout)
