"""The Linux desktop (barehub.desktop: Xvnc on a unix socket, noVNC's page) as the tests see it: opened from
JupyterLab's launcher in Chromium and typed into, its processes and sockets on the node, and another user of that
node trying its RFB socket, its X display and its websocket."""
from __future__ import annotations

import time
import urllib.parse

import websocket
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from testbed.web import wait_until
from tests.integration.browser import Browser
from tests.integration.hubclient import HubUser

CONNECTED = "html.noVNC_connected"  # noVNC's page once its RFB session is up
SESSION = ("Xvnc", "openbox", "xterm")  # the desktop's processes (the default session)


def xvnc_pid(node, user: str) -> int:
    pids = node.run(f"pgrep -u {user} -x Xvnc || true").stdout.split()
    assert len(pids) == 1, node.run("ps -ef").stdout
    return int(pids[0])


def sockets_only(node, user: str) -> tuple[str, int]:
    """Her Xvnc's RFB socket and display, after checking that it listens on no TCP port, and that its RFB socket
    is in her private (0700) directory, with VS Code's."""
    pid = xvnc_pid(node, user)
    assert f"pid={pid}," not in node.run("ss -Hltnp").stdout
    listening = [line.split()[4] for line in node.run("ss -Hlxp").stdout.splitlines()
                 if f"pid={pid}," in line and line.split()[1] == "LISTEN"]
    [rfb] = [path for path in listening if path.endswith("/desktop-vnc.sock")]
    assert node.run(f"stat -c '%a %U' {rfb.rsplit('/', 1)[0]}").stdout.split() == ["700", user]
    [x11] = [path for path in listening if path.startswith("@/tmp/.X11-unix/X")]
    return rfb, int(x11[len("@/tmp/.X11-unix/X"):])


X11_SETUP = ("import socket, struct, sys; s = socket.socket(socket.AF_UNIX); s.settimeout(10); "
             "s.connect('\\0/tmp/.X11-unix/X' + sys.argv[1]); "
             "s.sendall(struct.pack('<BxHHHHxx', ord('l'), 11, 0, 0, 0)); print(s.recv(1)[0])")


def another_user_cannot_reach(node, other: str, rfb: str, display: int) -> None:
    """Another user's shell on the same node: her RFB socket refuses him (its directory), and her X display,
    whose abstract socket anyone on the node can connect to, refuses a client without her cookie."""
    tried = node.run(f"runuser -u {other} -- python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{rfb}\")'",
                     check=False)
    assert "PermissionError: [Errno 13] Permission denied" in tried.stderr, tried
    setup = node.run(["runuser", "-u", other, "--", "python3", "-c", X11_SETUP, str(display)], check=False)
    assert setup.stdout.strip() == "0", setup  # 0: "Failed" (Authorization required)


def rfb_greeting(owner: HubUser, client: HubUser | None = None, token: str | None = None) -> bytes | int:
    """What the owner's /desktop-vnc/ websocket gives `client` (with his login's cookies, or only `token`): the RFB
    server's version, or the HTTP status refusing him."""
    client = client or owner
    url = urllib.parse.urlsplit(f"{owner.base}/user/{owner.name}/desktop-vnc/")
    ws_url = url._replace(scheme="wss" if url.scheme == "https" else "ws").geturl()
    headers = [f"Authorization: token {token}"] if token else []
    cookie = None if token else "; ".join(f"{c.name}={c.value}" for c in client.session.cookies)
    try:
        conn = websocket.create_connection(ws_url, timeout=30, header=headers, cookie=cookie,
                                           origin=f"{url.scheme}://{url.netloc}")
    except websocket.WebSocketBadStatusException as e:
        return e.status_code
    try:
        return conn.recv()
    finally:
        conn.close()


def desktop_from_the_launcher(b: Browser, node, user: str) -> float:
    """From JupyterLab (shown): the launcher's Desktop card, noVNC connected in the new tab, a command typed into
    the desktop's xterm (checked on the node). Returns the seconds from the click to the desktop shown."""
    output = f"/home/{user}/from-desktop"
    node.run(f"rm -f {output}")
    card = '.jp-LauncherCard[data-category="Other"]'
    try:
        b.wait_for(lambda b: [c for c in b.driver.find_elements(By.CSS_SELECTOR, card)
                              if c.text.startswith("Desktop")], 60, "the Desktop launcher card")
    except AssertionError:
        cards = [c.text for c in b.driver.find_elements(By.CSS_SELECTOR, ".jp-LauncherCard")]
        log = node.run(f"journalctl -q --no-pager -u jupyter-{user}-singleuser | grep -iE 'entry_point|desktop' "
                       f"| tail -20", check=False).stdout
        raise AssertionError(f"no Desktop card among {cards}; the server's log:\n{log}") from None
    b.shot("launcher")
    lab = b.driver.current_window_handle
    clicked = time.monotonic()
    next(c for c in b.driver.find_elements(By.CSS_SELECTOR, card) if c.text.startswith("Desktop")).click()
    b.wait_for(lambda b: len(b.driver.window_handles) > 1, 30, "the Desktop's tab")
    b.driver.switch_to.window(next(h for h in b.driver.window_handles if h != lab))
    b.wait_for_css(CONNECTED, 60)
    shown = time.monotonic() - clicked
    wait_until(lambda: node.run(f"pgrep -u {user} -P $(pgrep -u {user} -x xterm || echo 0) || true").stdout.strip(),
               30)  # the shell in the xterm
    time.sleep(1)  # its prompt drawn
    b.shot("desktop")
    type_in_xterm(b, "echo desktop-$((6*7)) $(id -un) > ~/from-desktop",
                  lambda: node.run(f"cat {output} 2>/dev/null || true").stdout.strip() == f"desktop-42 {user}")
    b.shot("typed-in-xterm")
    assert node.run(f"stat -c %U {output}").stdout.strip() == user
    b.driver.switch_to.window(lab)
    b.driver.close()  # the desktop alone from here: no JupyterLab polling the server
    b.driver.switch_to.window(b.driver.window_handles[0])
    return shown


def type_in_xterm(b: Browser, line: str, done, timeout: float = 60) -> None:
    """Click into the xterm (openbox: click to focus; the default session puts it at the top left) and type
    `line`, again until `done()` says it ran; each try first sends Ctrl-C (a command running there ends, a line
    whose first keys were lost in an earlier try is dropped)."""
    canvas = b.driver.find_element(By.CSS_SELECTOR, "#noVNC_container canvas")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        size = canvas.size
        ActionChains(b.driver).move_to_element_with_offset(canvas, 140 - size["width"] // 2, 140 - size["height"] // 2) \
            .click().key_down(Keys.CONTROL).send_keys("c").key_up(Keys.CONTROL).send_keys(line + "\n").perform()
        try:
            wait_until(done, 10)
            return
        except AssertionError:
            continue
    b.shot("xterm-did-not-run")
    raise AssertionError(f"{line!r} typed in the desktop's xterm did not run within {timeout} s")


def rss_mib(node, user: str) -> int:
    """The desktop's processes' resident memory (Xvnc, openbox, xterm)."""
    pids = [p for name in SESSION for p in node.run(f"pgrep -u {user} -x {name} || true").stdout.split()]
    return round(sum(int(v) for v in node.run(f"ps -o rss= -p {','.join(pids)}").stdout.split()) / 1024)

