import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_CONFIG = REPO / "installer" / "barehub" / "jupyter-config"  # the env's jupyter-server config (extensions)


def script_module(name: str):
    """A top-level script of the repository (bootstrap.py, cut_release.py) as a module: they are not in the package."""
    spec = importlib.util.spec_from_file_location(name, REPO / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bootstrap():
    return script_module("bootstrap")


@pytest.fixture(scope="session")
def cut_release():
    return script_module("cut_release")


@pytest.fixture
def prefix(tmp_path):
    """A prefix with the secrets the hub config reads, as the installer leaves it."""
    from barehub.base.paths import Paths

    paths = Paths.from_prefix(tmp_path / "barehub")
    paths.state.mkdir(parents=True)
    paths.records.mkdir()
    paths.config_d.mkdir()
    for secret in (paths.cookie_secret, paths.traefik_api_password, paths.barehub_api_token, paths.crypt_key):
        secret.write_text("0123abcd" * 8 + "\n")
    return paths


@pytest.fixture
def hub_api_server(monkeypatch):
    """Start a stand-in for the hub's API with a request handler class, as a server job meets it: on a free
    loopback port that JUPYTERHUB_API_URL names, with the server's token set; stopped after the test."""
    servers = []

    def start(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{server.server_port}/hub/api")
        monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "server-token")
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_jupyter_server(tmp_path: Path, stderr) -> tuple[subprocess.Popen, str]:
    """A real jupyter-server as a server of the env runs (the env's config, here JUPYTER_CONFIG_PATH, enables
    barehub's extensions; the hub's environment variables are the test's), at /user/kim/ with the token "secret";
    returns the process and its URL."""
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(SERVER_CONFIG), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_PLATFORM_DIRS="1", HOME=str(tmp_path))
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=secret",
               "--ServerApp.base_url=/user/kim/", f"--ServerApp.root_dir={tmp_path}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    return server, f"http://127.0.0.1:{port}/user/kim/"
