"""A Linux desktop beside JupyterLab: TigerVNC's Xvnc with a light window manager and a terminal, shown in the
browser by noVNC, through jupyter-server-proxy (jsp), on unix sockets in the user's private directory only
(barehub.apps: the same directory, checks and culling terms as VS Code's).

What the user sees. A "Desktop" card in JupyterLab's launcher opens /user/NAME/desktop/: noVNC's page, which
connects at once to /user/NAME/desktop-vnc/, where the desktop runs (an xterm in openbox, by default). Two jsp
entries, both in this module and both turned on by the hub's drop-in (BAREHUB_APPS=...,desktop):
- `desktop`: this module's page server (`python -m barehub.desktop page`), noVNC's files from Debian's `novnc`
  package (/usr/share/novnc) and a redirect to its vnc.html with the path of the other entry; jsp proxies HTTP to it.
- `desktop-vnc`: jsp's raw socket proxy (websocket <-> stream, websockify's job, in jsp itself), to Xvnc's RFB
  socket; its command is this module's `vnc` launcher, which jsp starts at noVNC's first connection.

Why not jupyter-remote-desktop-proxy (PyPI). Its entry point offers "Desktop" on every server of the env as soon as
`vncserver` is on the PATH, with no way to turn it off per site (jsp cannot disable an entry point), it has no
update_last_activity (jsp then counts every FramebufferUpdateRequest noVNC sends: an open tab keeps the server for
ever), and the app's page name is fixed to its own entry. The parts it does well are kept: Xvnc on a unix socket
(`-rfbunixpath`, `-rfbport -1`: no RFB port), `-SecurityTypes None` on that socket, and jsp's raw socket proxy.

Why Xvnc itself, not the `vncserver` wrapper. The wrapper finds a display by probing, writes ~/.vnc and
~/.Xauthority, and runs ~/.vnc/xstartup. The launcher instead lets Xvnc pick a free display (`-displayfd`: the X
server writes the number when it is ready), gives it a cookie in the private directory (`-auth`, an Xauthority
entry for any display of this host: the X socket in /tmp/.X11-unix is every user's to connect to, the cookie is
what keeps them out: measured, an xterm of another's without it gets "Authorization required"), and `-nolisten tcp`.
The session is BAREHUB_DESKTOP_SESSION (a shell command), by default an xterm at the top left and openbox.

A failure is said where the user looks. The page checks what it can before it serves noVNC (Xvnc, noVNC, the
session's programs, the socket directory) and answers 503 with the reason, as VS Code's does. What fails later (Xvnc
or the session ending before the display is up) is said to noVNC itself: the launcher then answers on the RFB socket
with the protocol's own refusal (no security types, and a reason), which noVNC shows as "New connection has been
rejected with reason: ...", instead of a spinner until jsp's timeout.

Idle culling. noVNC asks for screen updates all the time, and Xvnc's fences and updates flow back: jsp would count
them all. rfb_messages_are_use counts, of the client's RFB messages, only what a person does: keys (KeyEvent,
QEMU's extended key event), the pointer (PointerEvent: noVNC sends one only when the mouse moves or clicks on the
desktop), clipboard text; not SetPixelFormat, SetEncodings, FramebufferUpdateRequest, EnableContinuousUpdates,
fences or a desktop resize. What it cannot parse counts as use.
"""
from __future__ import annotations

import argparse
import collections
import functools
import http.server
import os
import secrets
import select
import shlex
import shutil
import signal
import socketserver
import struct
import subprocess
import sys
import threading
import urllib.parse
from pathlib import Path

from barehub.apps import (TIMEOUT_S, AppError, check_private_dir, check_socket_path, check_turned_on,
                          entry_socket, error_server, record_use, relay, remove_stale_socket, unix_server)
from barehub.die_with_parent import die_with_parent

ENV_NOVNC = "BAREHUB_NOVNC"  # noVNC's web files (vnc.html, app/, core/)
ENV_SESSION = "BAREHUB_DESKTOP_SESSION"  # the desktop's session, a shell command run with DISPLAY set
NOVNC = "/usr/share/novnc"  # Debian's and Ubuntu's `novnc` package (EPEL's too)
DEFAULT_SESSION = "xterm -geometry +24+24 & exec openbox"  # (openbox would place it anywhere: here, or centred)
DEFAULT_SESSION_PROGRAMS = ("xterm", "openbox")
PAGE = "desktop"  # jsp's entry names: the page, and the desktop's RFB stream
VNC = "desktop-vnc"
GEOMETRY = "1600x1000"  # Xvnc's first size; noVNC asks for the browser window's (resize=remote)
DISPLAY_WAIT_S = 30  # for Xvnc to write its display number (measured: 0.8 s)
STOP_WAIT_S = 5
LAST_LINES = 15
PACKAGES = ("an admin installs them on every node that runs servers: apt install tigervnc-standalone-server novnc "
            "openbox xterm (RHEL: dnf install tigervnc-server novnc openbox xterm)")


# ------------------------------------------------------------------------------------------ what it needs

def xvnc() -> str:
    found = shutil.which("Xvnc") or shutil.which("Xvnc", path="/usr/bin:/usr/local/bin")
    if not found:
        raise AppError(f"the desktop needs TigerVNC's Xvnc, which is not installed on this node ({os.uname()[1]}); "
                       f"{PACKAGES}")
    return found


def novnc_dir(env=os.environ) -> Path:
    directory = Path(env.get(ENV_NOVNC) or NOVNC)
    if not (directory / "vnc.html").is_file():
        raise AppError(f"the desktop needs noVNC, which is not installed on this node ({os.uname()[1]}): there is no "
                       f"{directory}/vnc.html ({ENV_NOVNC}); {PACKAGES}")
    return directory


def session_command(env=os.environ) -> str:
    """The session's shell command, after checking that its programs are there."""
    command = env.get(ENV_SESSION) or DEFAULT_SESSION
    programs = DEFAULT_SESSION_PROGRAMS if command == DEFAULT_SESSION else shlex.split(command)[:1]
    missing = [p for p in programs if not shutil.which(p, path=env.get("PATH") or os.defpath)]
    if missing and command == DEFAULT_SESSION:
        raise AppError(f"the desktop's default session needs {', '.join(missing)}, not found on this node "
                       f"({os.uname()[1]}); {PACKAGES}")
    if missing:
        raise AppError(f"the desktop's session {command!r} ({ENV_SESSION}, jupyterhub_config.d/apps.py) needs "
                       f"{missing[0]}, not found on this node ({os.uname()[1]}): an admin installs it on every node "
                       f"that runs servers, or sets another session")
    return command


def check_all(env=os.environ) -> tuple[str, str]:
    """Everything the desktop needs is there: Xvnc's path and the session's command, as checked."""
    novnc_dir(env)
    return xvnc(), session_command(env)


# ------------------------------------------------------------------------------------------ jsp's entries

def entry(part: str, env=os.environ, **settings) -> dict:
    """jsp's entry for one part (`page`, `vnc`): its launcher on a socket in the server's private directory."""
    check_turned_on("desktop", env)

    def checked(directory: str) -> str:
        sock = os.path.join(directory, f"{PAGE if part == 'page' else VNC}.sock")
        check_socket_path(sock)
        return sock
    sock, refused = entry_socket(checked, env)
    return {"command": [sys.executable, "-m", "barehub.desktop", part, "--socket", "{unix_socket}", *refused],
            "unix_socket": sock, "timeout": TIMEOUT_S, **settings}


def page_entry(env=os.environ) -> dict:
    """The c.ServerProxy.servers["desktop"] entry: noVNC's page, the launcher's card."""
    return entry("page", env, new_browser_tab=True, update_last_activity=record_use,
                 launcher_entry={"title": "Desktop", "category": "Other"})


def vnc_entry(env=os.environ) -> dict:
    """The c.ServerProxy.servers["desktop-vnc"] entry: the desktop's RFB stream, for noVNC's websocket."""
    return entry("vnc", env, raw_socket_proxy=True, launcher_entry={"enabled": False},
                 update_last_activity=functools.partial(record_use, is_use=rfb_messages_are_use))


# ------------------------------------------------------------------------------------------ the page

def vnc_path(env=os.environ) -> str:
    """The desktop's websocket as noVNC's `path` setting wants it: from the host's root, without the first slash
    (the server's base URL: a sub-path hub, a named server)."""
    return (env.get("JUPYTERHUB_SERVICE_PREFIX") or "/").strip("/") + "/" + VNC + "/"


def page_server(sock: str, novnc: Path, path: str) -> socketserver.UnixStreamServer:
    """noVNC's files on the unix socket `sock`; `/` redirects to its vnc.html, connecting at once to `path`."""
    start = "vnc.html?" + urllib.parse.urlencode(
        {"autoconnect": "true", "reconnect": "true", "resize": "remote", "path": path})

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(novnc), **kwargs)

        def do_GET(self) -> None:
            if urllib.parse.urlsplit(self.path).path in ("", "/"):
                self.send_response(302)
                self.send_header("Location", start)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_GET()

        def list_directory(self, path):
            self.send_error(404)

        def address_string(self) -> str:
            return "unix socket"

        def log_message(self, format, *args) -> None:  # noqa: A002 (http.server's name)
            sys.stderr.write(f"barehub desktop: page: {format % args}\n")

    return unix_server(sock, Handler)


def serve_page(sock: str, error: str | None = None, env=os.environ) -> None:
    if error is None:
        try:
            check_private_dir(os.path.dirname(sock))
            check_all(env)
            server = page_server(sock, novnc_dir(env), vnc_path(env))
        except AppError as e:
            error = str(e)
    if error is not None:
        sys.stderr.write(f"barehub desktop: cannot start: {error}\n")
        server = error_server(sock, "desktop", error)
    server.serve_forever()


# ------------------------------------------------------------------------------------------ the desktop

def write_xauthority(path: str) -> None:
    """An Xauthority file with one MIT-MAGIC-COOKIE-1 for any display of this host (FamilyWild, no display
    number: libXau matches it for every display), 0600, never through a link."""
    def counted(b: bytes) -> bytes:
        return struct.pack(">H", len(b)) + b
    entry = struct.pack(">H", 0xFFFF) + counted(b"") + counted(b"") + counted(b"MIT-MAGIC-COOKIE-1") + \
        counted(secrets.token_bytes(16))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(entry)


def xvnc_argv(xserver: str, sock: str, display_fd: int, xauthority: str) -> list[str]:
    return [xserver, "-displayfd", str(display_fd), "-rfbunixpath", sock, "-rfbunixmode", "0600", "-rfbport", "-1",
            "-SecurityTypes", "None", "-auth", xauthority, "-nolisten", "tcp", "-geometry", GEOMETRY, "-depth", "24",
            "-desktop", f"{os.environ.get('USER') or os.getuid()}'s desktop"]


def read_display(fd: int, xserver: subprocess.Popen) -> str | None:
    """The display number Xvnc writes when it is ready; None when it ended first or took DISPLAY_WAIT_S."""
    got = b""
    for _ in range(int(DISPLAY_WAIT_S * 10)):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            chunk = os.read(fd, 32)
            got += chunk
            if got.endswith(b"\n") or not chunk:
                break
        elif xserver.poll() is not None:
            break
    number = got.strip().decode(errors="replace")
    return number if number.isdigit() else None


def run_desktop(sock: str, xvnc_path: str, session_cmd: str, env=os.environ) -> tuple[int, str | None]:
    """Xvnc on `sock` and the session on its display, both children that die with the launcher, until either ends
    (the other is stopped then) or the launcher is stopped. Returns (the exit status, None) once the display was
    up, or (status, why) when Xvnc ended or hung before."""
    directory = os.path.dirname(sock)
    xauthority = os.path.join(directory, "desktop.Xauthority")
    write_xauthority(xauthority)
    remove_stale_socket(sock)
    last: collections.deque = collections.deque(maxlen=LAST_LINES)
    read_end, write_end = os.pipe()
    xserver = subprocess.Popen(xvnc_argv(xvnc_path, sock, write_end, xauthority), pass_fds=(write_end,), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    os.close(write_end)
    reader = threading.Thread(target=relay, args=(xserver.stdout, last), daemon=True)
    reader.start()
    display = read_display(read_end, xserver)
    os.close(read_end)
    if display is None:
        stop(xserver)
        reader.join(timeout=5)  # all it wrote
        lines = "".join(last).strip()
        return xserver.returncode or 1, (f"Xvnc ended (exit status {xserver.returncode}) or did not start within "
                                         f"{DISPLAY_WAIT_S} s; its last lines:\n{lines or '(nothing)'}")
    session = subprocess.Popen(["/bin/sh", "-c", session_cmd], cwd=env.get("HOME") or None,
                               env={**env, "DISPLAY": f":{display}", "XAUTHORITY": xauthority},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                               preexec_fn=die_with_parent)
    threading.Thread(target=relay, args=(session.stdout, last), daemon=True).start()
    ended = threading.Event()
    for child in (xserver, session):
        threading.Thread(target=lambda c=child: (c.wait(), ended.set()), daemon=True).start()

    def pass_on(signum, frame):
        ended.set()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, pass_on)
    while not ended.wait(0.5):
        pass
    stop_session(session)
    stop(xserver)
    return (xserver.returncode if xserver.returncode >= 0 else 128 - xserver.returncode), None


def stop(child: subprocess.Popen) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def stop_session(session: subprocess.Popen) -> None:
    """The session's whole process group (its window manager, terminals, their shells): SIGTERM, then SIGKILL."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(session.pid, signum)
        except ProcessLookupError:
            return
        try:
            session.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            continue


def refusal_server(sock: str, reason: str) -> socketserver.UnixStreamServer:
    """The RFB protocol's own refusal on `sock`, for every client: version 3.8, then no security types and the
    reason (RFC 6143 7.1.2), which noVNC shows as the connection's failure."""
    text = reason.encode()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.settimeout(10)
            try:
                self.request.sendall(b"RFB 003.008\n")
                self.request.recv(12)
                self.request.sendall(b"\x00" + struct.pack(">I", len(text)) + text)
            except OSError:
                pass

    return unix_server(sock, Handler)


def launch_vnc(sock: str, error: str | None = None, env=os.environ) -> None:
    """The desktop after its checks; on a failure, the RFB refusal with the reason on `sock` until stopped."""
    if error is None:
        try:
            check_socket_path(sock)
            check_private_dir(os.path.dirname(sock))
            xvnc_path, session_cmd = check_all(env)
        except AppError as e:
            error = str(e)
        else:
            status, error = run_desktop(sock, xvnc_path, session_cmd, env)
            if error is None:
                raise SystemExit(status)
    sys.stderr.write(f"barehub desktop: cannot start: {error}\n")
    sys.stderr.flush()
    refusal_server(sock, f"the desktop cannot start: {error}").serve_forever()


# ------------------------------------------------------------------------------------------ use, for the culler

# A client->server RFB message's type -> (its size from what precedes its variable part, whether it is use).
# Sizes from RFC 6143 7.5 and the extensions noVNC speaks (rfbproto): each a function of the message's bytes.
RFB_CLIENT_MESSAGES = {
    0: (lambda m: 20, False),  # SetPixelFormat
    2: (lambda m: 4 + 4 * struct.unpack_from(">H", m, 2)[0], False),  # SetEncodings
    3: (lambda m: 10, False),  # FramebufferUpdateRequest
    4: (lambda m: 8, True),  # KeyEvent
    5: (lambda m: 6, True),  # PointerEvent
    6: (lambda m: 8 + struct.unpack_from(">I", m, 4)[0], True),  # ClientCutText
    150: (lambda m: 10, False),  # EnableContinuousUpdates
    248: (lambda m: 9 + m[8], False),  # ClientFence
    251: (lambda m: 8 + 16 * m[6], False),  # SetDesktopSize
    255: (lambda m: 12, True),  # QEMU extended key event
}
RFB_LONGEST_FIXED = 12  # bytes every size above can be read from


def rfb_messages_are_use(message: bytes | str) -> bool:
    """Whether one websocket message from noVNC holds something a person did (see the module's docstring). One
    message may hold several RFB messages; the handshake's and anything unknown or cut count as use."""
    if not isinstance(message, (bytes, bytearray)) or not message:
        return True
    offset = 0
    while offset < len(message):
        known = RFB_CLIENT_MESSAGES.get(message[offset])
        rest = message[offset:offset + RFB_LONGEST_FIXED]
        if known is None:
            return True
        size_of, is_use = known
        try:
            size = size_of(rest)
        except (struct.error, IndexError):
            return True
        if is_use:
            return True
        offset += size
    return offset != len(message)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m barehub.desktop")
    parser.add_argument("part", choices=("page", "vnc"), help="noVNC's page, or the desktop itself (jsp's commands)")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--error", help="serve this error instead (a check that failed when the entry was made)")
    args = parser.parse_args(argv)
    (serve_page if args.part == "page" else launch_vnc)(args.socket, args.error)


if __name__ == "__main__":
    main()
