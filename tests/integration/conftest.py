"""Session fixtures: a wheelhouse built from this checkout, one booted systemd container, one install."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from tests.integration.helpers import (BASE_URL, CACHE, CACHE_IN_CONTAINER, MEASUREMENTS, REPO, USER, Container,
                                       add_local_user, bootstrap_cmd, build_wheelhouse)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI (.ci/run sets BAREHUB_CI=1) a skipped integration test fails, saying why it was skipped: a run
    that is not root, a machine without systemd-nspawn, or a clone that cannot read a past release is not a
    green run. Elsewhere a skip stays a skip."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call" and "container" in getattr(item, "funcargs", {}):
        try:
            keep_the_hubs_journal(item.funcargs["container"], item.nodeid)
        except Exception as e:  # a diagnostic never changes the outcome
            report.sections.append(("hub journal", f"not kept: {e}"))
    if report.skipped and os.environ.get("BAREHUB_CI") and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (BAREHUB_CI=1), which fails the run: {reason}"


def keep_the_hubs_journal(container, nodeid: str) -> None:
    """For whoever debugs a failed test: the hub's and the server units' last journal lines and the units'
    states, and the whole journal of the last 10 minutes beside them (.all.txt), in test-artifacts/journals/ (the
    container is gone once the session ends)."""
    from tests.integration.browser import ARTIFACTS
    shown = container.run("systemctl list-units --all --no-pager 'jupyter*' 'barehub*'; "
                          "echo '== the hub: its warnings and errors of the last 20 min, but its access log'; "
                          "journalctl --no-pager -q --since -20min -u jupyterhub | grep -E '\\[[WEC] ' "
                          "| grep -v ' log:1[89][0-9]\\]'; "
                          "echo '== the last 300 lines'; "
                          "journalctl --no-pager -q -n 300 -u jupyterhub -u 'jupyter-*'", check=False, timeout=60)
    where = ARTIFACTS / "journals" / (nodeid.replace("/", "_").replace("::", "--")[:200] + ".txt")
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(shown.stdout + shown.stderr)
    # every unit's lines of the last 10 minutes, systemd's own too (a server unit's start and end, its jobs)
    whole = container.run("journalctl --no-pager -q -o short-precise --since -10min", check=False, timeout=60)
    where.with_suffix(".all.txt").write_text(whole.stdout + whole.stderr)


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """This checkout's wheelhouse: built here, or once by tests/run for the test processes it runs side by side
    (BAREHUB_WHEELHOUSE: two processes rebuilding one wheelhouse would delete each other's barehub wheel)."""
    built = os.environ.get("BAREHUB_WHEELHOUSE")
    return Path(built) if built else build_wheelhouse(REPO)


@pytest.fixture(scope="session")
def container(tmp_path_factory, wheelhouse) -> Container:
    if os.geteuid() != 0 or not shutil.which("systemd-nspawn"):
        pytest.skip("integration tests need root and systemd-nspawn (apt-get install systemd-container)")
    name = f"barehub-test-{os.getpid()}"
    CACHE.mkdir(parents=True, exist_ok=True)  # builds a module makes later are seen in it too (test_apps)
    box = Container(name, {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse", str(CACHE): CACHE_IN_CONTAINER},
                    tmp_path_factory.mktemp("container") / "console.log")
    start = time.monotonic()
    box.boot()
    MEASUREMENTS["container boot (s)"] = round(time.monotonic() - start, 1)
    add_local_user(box, USER)
    add_local_user(box, "bob")
    yield box
    box.stop()


@pytest.fixture(scope="session")
def installed(container):
    start = time.monotonic()
    proc = container.run(bootstrap_cmd(), check=False, timeout=900)
    MEASUREMENTS["install: bootstrap.py, pip backend, offline wheelhouse (s)"] = round(time.monotonic() - start, 1)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="session")
def base_url(installed) -> str:
    return BASE_URL


MODULE_SECONDS: dict[str, float] = {}  # where the suite's time goes, to balance tests/run's lanes


def pytest_runtest_logreport(report):
    module = report.nodeid.split("::")[0]
    MODULE_SECONDS[module] = MODULE_SECONDS.get(module, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if MEASUREMENTS:
        terminalreporter.section("barehub measurements")
        for key, value in MEASUREMENTS.items():
            terminalreporter.write_line(f"{key}: {value}")
    if MODULE_SECONDS:
        terminalreporter.section("time per module (s; the session's container boot and install in the first)")
        for module, seconds in sorted(MODULE_SECONDS.items(), key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:7.1f}  {module}")
