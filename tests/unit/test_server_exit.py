"""A user's server exits within seconds of SIGTERM (barehub.server_exit): the cause seen in full test runs
(Python waiting at exit for an idle anyio worker thread that anyio stops only when a never-ending task ends) and
the bound for any other cause, each tried in a real process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from barehub.server_exit import EXIT_DEADLINE_S
from tests.unit.conftest import REPO, SERVER_AUTH, SERVER_CONFIG, SERVER_TOKEN, free_port

# jupyter-server's situation at a stop: a file operation of a request on a keep-alive connection ran in an anyio
# worker thread, whose "root task" is the connection's task (tornado runs its loop with run_forever, so anyio
# finds no run_until_complete task); the loop stops, that task never ends, the worker is never told to stop.
WORKER_LEFT_AT_EXIT = """
import asyncio, sys, threading
import anyio
if sys.argv[1] == "fixed":
    from barehub.server_exit import finish_worker_threads
    threading._register_atexit(finish_worker_threads)

async def connection():
    await anyio.to_thread.run_sync(lambda: None)
    await asyncio.Event().wait()

loop = asyncio.new_event_loop()
loop.create_task(connection())
loop.call_later(0.5, loop.stop)
loop.run_forever()
print("loop stopped", flush=True)
"""


def exits_within(command: list[str], seconds: float, env=None) -> bool:
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        proc.wait(seconds)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def test_an_idle_anyio_worker_no_longer_holds_the_exit():
    env = dict(os.environ, PYTHONPATH=str(REPO / "installer"))
    assert not exits_within([sys.executable, "-c", WORKER_LEFT_AT_EXIT, "upstream"], 5, env)  # the defect
    assert exits_within([sys.executable, "-c", WORKER_LEFT_AT_EXIT, "fixed"], 5, env)


def start_server(tmp_path: Path, stuck: bool) -> tuple[subprocess.Popen, str]:
    """jupyter-server as a server of the env runs it (the env's config enables barehub's extensions); `stuck`: a
    site's or user's extension left a thread that never ends."""
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    if stuck:
        (config_dir / "jupyter_server_config.py").write_text(
            "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), name='stuck').start()\n")
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(SERVER_CONFIG), JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_PLATFORM_DIRS="1", HOME=str(tmp_path), PYTHONPATH=str(REPO / "installer"))
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={SERVER_TOKEN}",
               f"--ServerApp.root_dir={tmp_path}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.stderr.read()
        try:
            requests.get(url + "api/status", timeout=1)
            return server, url
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "jupyter-server did not start"
            time.sleep(0.1)


@pytest.mark.parametrize("stuck", [False, True])
def test_a_server_exits_within_seconds_of_sigterm_whatever_is_left_running(tmp_path, stuck):
    server, url = start_server(tmp_path, stuck)
    try:
        r = requests.get(url + "api/contents", headers=SERVER_AUTH, timeout=10)
        assert r.status_code == 200  # the contents API, in anyio's worker threads, as JupyterLab's load calls it
        start = time.monotonic()
        server.send_signal(signal.SIGTERM)
        server.wait(EXIT_DEADLINE_S + 3)
        took = time.monotonic() - start
    finally:
        server.kill()
    log = server.stderr.read()
    if stuck:
        assert EXIT_DEADLINE_S - 0.5 < took < EXIT_DEADLINE_S + 3 and "threads left: stuck" in log, (took, log[-2000:])
    else:
        assert took < 3 and "did not exit" not in log, (took, log[-2000:])
