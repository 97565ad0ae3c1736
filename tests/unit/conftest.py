import fnmatch
import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from barehub.systemd import Systemctl

REPO = Path(__file__).resolve().parents[2]
SERVER_CONFIG = REPO / "installer" / "barehub" / "jupyter-config"  # the env's jupyter-server config (extensions)
SERVER_TOKEN = "secret"  # the token of the jupyter-servers the tests start
SERVER_AUTH = {"Authorization": f"token {SERVER_TOKEN}"}  # a client of such a server, as the user's browser
PARSERS = "rfc3987_syntax.syntax_helpers"  # the module whose import builds the IRI parsers (barehub.lazy_imports)


class RecordingSystemctl(Systemctl):
    """barehub's Systemctl with the systemctl command itself replaced, for every test that needs systemd.

    Each command barehub would run is recorded in `calls` (its arguments, in order) and succeeds, printing
    `answers[first argument]` if given; `list-units PATTERN...` prints the `units` that match (in their states,
    else running); a transient unit started (start_transient) is recorded as ("systemd-run", "--unit=UNIT",
    options..., "--", command...).
    `show` answers from `units` ({unit: {property: value}}), or from the `show` function given, and records the
    unit asked about in `shown` (not in `calls`: a question changes nothing). The composite steps (stop_all,
    loaded_units, main_pid) stay barehub's own, so a test sees exactly what they send."""

    def __init__(self, units: dict | None = None, answers: dict | None = None, show=None, timeout: float = 120):
        super().__init__(timeout)
        self.units, self.answers, self._show = units or {}, answers or {}, show
        self.calls: list[tuple[str, ...]] = []
        self.shown: list[str] = []

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        self.calls.append(args)
        if args[0] == "list-units":
            patterns = args[args.index("--") + 1:] if "--" in args else args[-1:]
            stdout = ""
            for unit in self.units:
                known = self.units[unit] if isinstance(self.units, dict) else {}
                for name in (unit, f"{unit}.service"):  # (a unit named with or without its suffix)
                    if any(fnmatch.fnmatch(name, pattern) for pattern in patterns):
                        stdout += (f"{name} {known.get('LoadState', 'loaded')} {known.get('ActiveState', 'active')} "
                                   f"{known.get('SubState', 'running')}\n")
                        break
        else:
            stdout = self.answers.get(args[0], "")
        return subprocess.CompletedProcess(["systemctl", *args], 0, stdout=stdout, stderr="")

    def start_transient(self, unit: str, command, options) -> None:
        self.calls.append(("systemd-run", f"--unit={unit}", *options, "--", *command))

    def show(self, unit: str, *props: str) -> dict[str, str]:
        self.shown.append(unit)
        if self._show:
            return self._show(unit, *props)
        known = self.units.get(unit, {})
        return {p: known[p] for p in props if p in known}

    def show_many(self, units, *props: str) -> dict[str, dict[str, str]]:
        return {unit: self.show(unit, *props) for unit in units}


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
    barehub's extensions; the hub's environment variables are the test's), at /user/kim/ with SERVER_TOKEN;
    returns the process and its URL."""
    port = free_port()
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(SERVER_CONFIG), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTER_DATA_DIR=str(tmp_path / "data"), JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_PLATFORM_DIRS="1", HOME=str(tmp_path))
    command = [sys.executable, "-m", "jupyter_server", "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={SERVER_TOKEN}",
               "--ServerApp.base_url=/user/kim/", f"--ServerApp.root_dir={tmp_path}"]
    if os.geteuid() == 0:
        command.append("--allow-root")
    server = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=stderr)
    return server, f"http://127.0.0.1:{port}/user/kim/"
