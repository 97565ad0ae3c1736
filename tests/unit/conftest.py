import http.server
import importlib.util
import sys
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def bootstrap():
    """bootstrap.py as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("bootstrap", REPO / "bootstrap.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bootstrap"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def prefix(tmp_path):
    """A prefix with the secrets the hub config reads, as the installer leaves it."""
    from barehub.paths import Paths

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
