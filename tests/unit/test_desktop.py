"""A Linux desktop beside JupyterLab (barehub.desktop): what a user and an admin see.

The entries jupyter-server-proxy gets (turned on by the drop-in only; unix sockets in the server's one private
directory; the RFB stream's use rule), and the real thing: Debian's TigerVNC Xvnc, openbox and xterm (tests/run
installs them), started by the launcher as jsp starts it, spoken to over its RFB and X sockets; noVNC's page served
over the page's socket; the refusals said in the RFB protocol noVNC shows.
"""
from __future__ import annotations

import http.client
import re
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from barehub import apps, desktop
from barehub.desktop import page_entry, rfb_messages_are_use, vnc_entry

ON = {"BAREHUB_APPS": "vscode,desktop"}


def private(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


@pytest.fixture(autouse=True)
def fresh_job_dirs(tmp_path, monkeypatch):
    monkeypatch.setattr(apps, "_JOB_DIRS", {})
    monkeypatch.setattr(apps, "ERROR_SOCKET_PARENT", str(tmp_path))


# ------------------------------------------------------------------------------------------ the entries

def test_the_desktop_is_offered_only_where_the_drop_in_turned_it_on(tmp_path):
    for env in ({}, {"BAREHUB_APPS": "vscode"}, {"BAREHUB_APPS": "desktops"}):
        for entry in (page_entry, vnc_entry):
            with pytest.raises(RuntimeError, match="Desktop is not turned on"):
                entry({**env, "TMPDIR": str(tmp_path)})


def test_a_jobs_apps_share_one_private_directory_and_only_the_page_has_a_card(tmp_path):
    """A Slurm job: a new 0700 directory in its TMPDIR, one for all of its apps' entries."""
    env = {**ON, "TMPDIR": str(tmp_path)}
    page, vnc, vscode = page_entry(env), vnc_entry(env), apps.vscode_entry(env)
    directory = os.path.dirname(page["unix_socket"])
    assert os.path.dirname(vnc["unix_socket"]) == directory == os.path.dirname(vscode["unix_socket"])
    assert Path(directory).parent == tmp_path and os.stat(directory).st_mode & 0o777 == 0o700
    assert page["launcher_entry"]["title"] == "Desktop" and vnc["launcher_entry"] == {"enabled": False}
    assert vnc["raw_socket_proxy"] is True and "raw_socket_proxy" not in page
    assert "--error" not in page["command"] + vnc["command"]


def test_a_socket_directory_others_can_reach_is_said_and_nothing_listens_there(tmp_path):
    runtime = tmp_path / "run"
    (runtime / "apps").mkdir(parents=True, mode=0o755)
    (runtime / "apps").chmod(0o755)
    entry = vnc_entry({**ON, "RUNTIME_DIRECTORY": str(runtime)})
    assert not entry["unix_socket"].startswith(str(runtime))
    assert "--error" in entry["command"] and "mode 0755" in entry["command"][-1]


def test_jupyter_server_proxy_finds_the_desktops_entries_in_barehubs_metadata():
    import tomllib

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    entries = pyproject["project"]["entry-points"]["jupyter_serverproxy_servers"]
    assert entries["desktop"] == "barehub.desktop:page_entry" and entries["desktop-vnc"] == "barehub.desktop:vnc_entry"
    assert desktop.PAGE == "desktop" and desktop.VNC == "desktop-vnc"  # the page's redirect names the second


# ------------------------------------------------------------------------------------------ use, for the culler

def key(down: int = 1, keysym: int = 0x61) -> bytes:
    return struct.pack(">BBxxI", 4, down, keysym)


def pointer(x: int = 10, y: int = 20, buttons: int = 0) -> bytes:
    return struct.pack(">BBHH", 5, buttons, x, y)


def update_request(incremental: int = 1) -> bytes:
    return struct.pack(">BBHHHH", 3, incremental, 0, 0, 1600, 1000)


def fence(payload: bytes = b"") -> bytes:
    return struct.pack(">BxxxIB", 248, 0x80000000, len(payload)) + payload


ENCODINGS = struct.pack(">BxH", 2, 3) + struct.pack(">iii", 7, -223, -308)
PIXEL_FORMAT = bytes([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0])
CONTINUOUS = struct.pack(">BBHHHH", 150, 1, 0, 0, 1600, 1000)
DESKTOP_SIZE = struct.pack(">BxHHBx", 251, 1600, 1000, 1) + struct.pack(">IHHHHI", 0, 0, 0, 1600, 1000, 0)


class Handler:
    """What the entry's update_last_activity sees of jsp's raw socket handler."""

    def __init__(self, update_last_activity, upgrade: str = "websocket"):
        self.request = SimpleNamespace(path="/user/kim/desktop-vnc/", headers={"Upgrade": upgrade} if upgrade else {})
        self.record, self.counted = update_last_activity, []

    def on_message(self, message):  # jsp's: records activity, then writes to the app's socket
        self.counted.append(self.record(self))


def test_an_open_untouched_desktop_tab_is_idle_and_keys_the_mouse_and_the_clipboard_are_use(tmp_path):
    """noVNC asks for updates after each one, answers the server's fences, sends its window's size: none is use."""
    ws = Handler(vnc_entry({**ON, "TMPDIR": str(tmp_path)})["update_last_activity"])
    assert not ws.record(ws)  # the connection's start (jsp records it)
    ws.on_message(update_request())
    ws.on_message(update_request() + fence() + update_request())  # batched by noVNC's send queue
    ws.on_message(PIXEL_FORMAT + ENCODINGS + update_request(0) + CONTINUOUS + DESKTOP_SIZE)
    ws.on_message(fence(b"abc"))
    ws.on_message(update_request() + key())  # a key typed among them
    ws.on_message(pointer())
    assert ws.counted == [False, False, False, False, True, True]
    assert not ws.record(ws)  # an app->client message (a screen update)


def test_rfb_messages_a_person_sends_are_use_and_what_is_unknown_or_cut_too():
    assert rfb_messages_are_use(key()) and rfb_messages_are_use(key(down=0))
    assert rfb_messages_are_use(pointer(buttons=1))
    assert rfb_messages_are_use(struct.pack(">BxxxI", 6, 5) + b"hello")  # clipboard text
    assert rfb_messages_are_use(struct.pack(">BBHII", 255, 0, 1, 0x61, 30))  # QEMU extended key event
    assert rfb_messages_are_use(b"RFB 003.008\n")  # the handshake: she just opened the page
    assert rfb_messages_are_use(update_request()[:6])  # cut
    assert rfb_messages_are_use(bytes([200]) + bytes(9))  # an extension this rule does not know
    assert rfb_messages_are_use(update_request() + b"\x03")  # a second message cut
    assert rfb_messages_are_use("text")
    assert not rfb_messages_are_use(update_request() * 3)


# ------------------------------------------------------------------------------------------ the page

class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str):
        super().__init__("localhost", timeout=10)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(10)
        self.sock.connect(self.unix_path)


def get(sock: str, path: str) -> tuple[int, dict, bytes]:
    conn = UnixHTTPConnection(sock)
    conn.request("GET", path)
    r = conn.getresponse()
    return r.status, dict(r.getheaders()), r.read()


def wait_for_socket(sock: str, proc: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, (proc.log.seek(0), proc.log.read().decode())
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(sock)
            return
        except OSError:
            time.sleep(0.05)
        finally:
            probe.close()
    raise AssertionError(f"nothing listens on {sock}")


def run(part: str, sock: str, env: dict, *extra: str) -> subprocess.Popen:
    """The launcher as jsp runs it; its log (Xvnc's too) in a file beside the socket's directory."""
    log = open(Path(sock).parent.parent / f"{part}.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "barehub.desktop", part, "--socket", sock, *extra],
                            env={**os.environ, **env}, stderr=log, cwd=os.path.dirname(sock))
    proc.log = log
    return proc


def ended(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    proc.log.close()


def test_the_page_sends_novnc_to_the_desktops_stream_under_the_servers_own_url(tmp_path):
    """A hub on a sub-path, a named server: noVNC's `path` is the server's prefix and the second entry."""
    sock = str(private(tmp_path / "apps") / "desktop.sock")
    page = run("page", sock, {"JUPYTERHUB_SERVICE_PREFIX": "/jhub/user/kim/big/"})
    try:
        wait_for_socket(sock, page)
        status, headers, _ = get(sock, "/")
        assert status == 302
        assert headers["Location"] == ("vnc.html?autoconnect=true&reconnect=true&resize=remote&"
                                       "path=jhub%2Fuser%2Fkim%2Fbig%2Fdesktop-vnc%2F")
        status, headers, body = get(sock, "/vnc.html")
        assert status == 200 and b"noVNC" in body
        assert get(sock, "/app/ui.js")[0] == 200  # its modules, from Debian's novnc
        assert get(sock, "/app/")[0] == 404  # no listings
        assert get(sock, "/../../etc/passwd")[0] == 404
        assert os.stat(sock).st_mode & 0o777 == 0o600
    finally:
        ended(page)


def test_without_novnc_the_page_says_what_to_install_at_once(tmp_path):
    sock = str(private(tmp_path / "apps") / "desktop.sock")
    page = run("page", sock, {"BAREHUB_NOVNC": str(tmp_path / "none")})
    try:
        wait_for_socket(sock, page)
        status, _, body = get(sock, "/")
    finally:
        ended(page)
    text = body.decode()
    assert status == 503 and "Desktop cannot start" in text, text
    assert f"no {tmp_path}/none/vnc.html (BAREHUB_NOVNC)" in text and "apt install tigervnc-standalone-server novnc" in text


# ------------------------------------------------------------------------------------------ the desktop itself

def rfb_greeting(sock: str) -> bytes:
    """What a VNC client gets after saying it speaks RFB 3.8: the security types (or a refusal and its reason)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(sock)
        assert s.recv(12) == b"RFB 003.008\n"
        s.sendall(b"RFB 003.008\n")
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                return got
            got += chunk
            if got[:1] != b"\x00" or len(got) >= 5 + struct.unpack(">I", got[1:5].ljust(4, b"\0"))[0]:
                return got


def x11_setup(display: int, cookie: bytes | None) -> int:
    """An X11 connection setup on the display's socket, with the cookie or none: 1 success, 0 failed."""
    name = b"MIT-MAGIC-COOKIE-1" if cookie else b""
    data = cookie or b""
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(f"/tmp/.X11-unix/X{display}")
        s.sendall(struct.pack("<BxHHHHxx", ord("l"), 11, 0, len(name), len(data)) + pad(name) + pad(data))
        return s.recv(1)[0]


def children(launcher: subprocess.Popen, name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(launcher.pid), "-x", name], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


def session_of(launcher: subprocess.Popen) -> str:
    """The processes of the desktop's session (`xterm & exec openbox`: openbox is the launcher's child)."""
    found = children(launcher, "openbox")
    if not found:
        return ""
    return subprocess.run(["pgrep", "-a", "-s", str(os.getsid(found[0]))], capture_output=True, text=True).stdout


def display_of(listening: list[str]) -> int:
    return int(next(p for p in listening if p.startswith("/tmp/.X11-unix/X"))[len("/tmp/.X11-unix/X"):])


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for PID 1 (here: not a booted systemd) to reap it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time"
        time.sleep(0.05)


def test_the_desktop_runs_on_its_socket_only_its_display_needs_the_cookie_and_a_stop_ends_it_all(tmp_path):
    """The launcher as jsp starts it: Xvnc on the RFB socket (0600, no password of its own, no TCP port), an xterm
    in openbox on its display, the display refusing a client without the cookie in the private directory; its
    stop ends Xvnc and the whole session."""
    directory = private(tmp_path / "apps")
    sock = str(directory / "desktop-vnc.sock")
    session = "sleep 600 & xterm & exec openbox"  # the default's, and a process that is no X client
    launcher = run("vnc", sock, {"HOME": str(tmp_path), "BAREHUB_DESKTOP_SESSION": session})
    try:
        wait_for_socket(sock, launcher)
        assert rfb_greeting(sock) == b"\x01\x01"  # one security type: None (the socket is the lock)
        assert os.stat(sock).st_mode & 0o777 == 0o600
        xvnc_pid = children(launcher, "Xvnc")[0]
        sockets = subprocess.run(["ss", "-Hlxp"], capture_output=True, text=True).stdout
        xvncs = [line.split()[4] for line in sockets.splitlines()
                 if f"pid={xvnc_pid}," in line and line.split()[1] == "LISTEN"]  # (Xvnc keeps an unbound one)
        assert sorted(p for p in xvncs if not p.startswith("@")) == sorted([sock, f"/tmp/.X11-unix/X{display_of(xvncs)}"])
        listening = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True).stdout
        assert f"pid={xvnc_pid}," not in listening, listening  # no RFB port, no X port
        cookie = (directory / "desktop.Xauthority").read_bytes()[-16:]
        assert (directory / "desktop.Xauthority").stat().st_mode & 0o777 == 0o600
        display = display_of(xvncs)
        assert x11_setup(display, None) == 0 and x11_setup(display, cookie) == 1
        wait_until(lambda: "xterm" in session_of(launcher))
        session = session_of(launcher)
        assert "openbox" in session and "sleep 600" in session, session
        pids = [xvnc_pid] + [int(line.split()[0]) for line in session.splitlines()]
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(20)
        time.sleep(0.5)
        assert [pid for pid in pids if alive(pid)] == [], session
    finally:
        ended(launcher)


def test_a_session_that_cannot_start_is_refused_in_rfb_with_the_reason_novnc_shows(tmp_path):
    sock = str(private(tmp_path / "apps") / "desktop-vnc.sock")
    launcher = run("vnc", sock, {"BAREHUB_DESKTOP_SESSION": "startxfce4 --replace"})
    try:
        wait_for_socket(sock, launcher)
        got = rfb_greeting(sock)
    finally:
        ended(launcher)
    assert got[:1] == b"\x00"  # no security types: refused; then the reason
    reason = got[5:].decode()
    assert reason.startswith("the desktop cannot start: the desktop's session 'startxfce4 --replace' "
                             "(BAREHUB_DESKTOP_SESSION, jupyterhub_config.d/apps.py) needs startxfce4"), reason


def test_xvnc_ending_before_its_display_is_up_is_refused_with_its_last_lines(tmp_path, monkeypatch):
    """An Xvnc that cannot start (here: a geometry it refuses) ends before it writes its display."""
    sock = str(private(tmp_path / "apps") / "desktop-vnc.sock")
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "Xvnc").write_text("#!/bin/sh\necho 'Xvnc: cannot open display: no screens found' >&2\nexit 1\n")
    (shim / "Xvnc").chmod(0o755)
    launcher = run("vnc", sock, {"PATH": f"{shim}:{os.environ['PATH']}"})
    try:
        wait_for_socket(sock, launcher)
        reason = rfb_greeting(sock)[5:].decode()
    finally:
        ended(launcher)
    assert "Xvnc ended (exit status 1)" in reason and "no screens found" in reason, reason


# ------------------------------------------------------------------------------------------ the hub's drop-in

def drop_in(prefix, **site_values) -> str:
    from barehub.package_files import shipped

    text = (shipped("jupyterhub_config.d") / "apps.py").read_text()
    for name, value in site_values.items():
        text, found = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", text, flags=re.M)
        assert found == 1, name
    (prefix.config_d / "60-apps.py").write_text(text)
    return text


def test_the_drop_in_turns_the_desktop_on_with_its_session_for_every_spawner(prefix):
    from barehub.slurm_spawner import SlurmSpawner
    from barehub.validation import load_config

    drop_in(prefix, APPS="vscode,desktop", DESKTOP_SESSION="startxfce4")
    environment = SlurmSpawner(config=load_config(prefix)).environment
    assert environment["BAREHUB_APPS"] == "vscode,desktop"
    assert environment["BAREHUB_DESKTOP_SESSION"] == "startxfce4"


def test_an_app_the_drop_in_does_not_know_is_named_with_its_file_and_line(prefix):
    from barehub.validation import validate

    drop_in(prefix, APPS="vscode,dekstop")
    _, [problem] = validate(prefix)
    assert problem.file == prefix.config_d / "60-apps.py" and problem.line, problem
    assert "'dekstop' is not an app barehub offers" in str(problem), problem
