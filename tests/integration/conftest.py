"""Session fixtures: a wheelhouse built from this checkout, one booted systemd container, one install."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.container import Container

REPO = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("BAREHUB_TEST_CACHE", Path.home() / ".cache" / "barehub-tests"))
SYSTEM_PYTHON = "/usr/bin/python3"  # user servers cannot exec a python under /root (0700)
HTTP_PORT = 28080
PREFIX = "/opt/barehub"
USER, PASSWORD = "alice", "alice-Secret-1"
MEASUREMENTS: dict[str, float | str] = {}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """bootstrap.py --make-wheelhouse, as an air-gapped site would run it; downloads are cached."""
    lock_hash = hashlib.sha256((REPO / "requirements.lock").read_bytes()).hexdigest()[:16]
    target = CACHE / f"wheelhouse-{lock_hash}"
    for old in target.glob("barehub-*.whl"):
        old.unlink()  # always this checkout's code
    proc = subprocess.run([SYSTEM_PYTHON, str(REPO / "bootstrap.py"), "--make-wheelhouse", str(target)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


@pytest.fixture(scope="session")
def container(tmp_path_factory, wheelhouse) -> Container:
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        pytest.skip("integration tests need root and systemd-nspawn (apt-get install systemd-container)")
    name = f"barehub-test-{os.getpid()}"
    box = Container(name, {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse"},
                    tmp_path_factory.mktemp("container") / "console.log")
    start = time.monotonic()
    box.boot()
    MEASUREMENTS["container boot (s)"] = round(time.monotonic() - start, 1)
    box.run(f"useradd --create-home --shell /bin/bash {USER} && echo '{USER}:{PASSWORD}' | chpasswd")
    box.run("useradd --create-home --shell /bin/bash bob && echo 'bob:bob-Secret-2' | chpasswd")
    yield box
    box.stop()


def bootstrap_cmd(*extra: str) -> str:
    return " ".join([SYSTEM_PYTHON, "/mnt/src/bootstrap.py", "--env-backend", "pip",
                     "--wheelhouse", "/mnt/wheelhouse", "--http-port", str(HTTP_PORT), *extra])


@pytest.fixture(scope="session")
def installed(container):
    start = time.monotonic()
    proc = container.run(bootstrap_cmd(), check=False, timeout=900)
    MEASUREMENTS["install: bootstrap.py, pip backend, offline wheelhouse (s)"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="session")
def base_url(installed) -> str:
    return f"http://127.0.0.1:{HTTP_PORT}"


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("barehub measurements")
        for key, value in MEASUREMENTS.items():
            terminalreporter.write_line(f"{key}: {value}")
