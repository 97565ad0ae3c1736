"""VS Code and a Linux desktop beside JupyterLab (jupyterhub_config.d/apps.py, barehub.apps, barehub.desktop) with a
real code-server: built by barehub's
own `barehub apps install vscode` code on this machine (testbed/code_server.py: the lanes have no network), put
where that command puts it, PREFIX/apps/code-server, and offered by the shipped drop-in to local servers.

What a user sees: /user/NAME/vscode/ answers with VS Code's workbench through traefik; what another user on the same
machine sees: no TCP port of it (ss -ltnp), its socket in a directory she cannot enter, and her own login or token
refused at the other's /vscode/. The desktop: Debian's TigerVNC, noVNC, openbox and xterm (tests/run installs them
on this machine, whose /usr the container shares). Uses the session's install; its own users (wes, xena); leaves
their servers stopped and the drop-in removed.
"""
from __future__ import annotations

import re
import time

import pytest

from tests.integration.helpers import DROP_INS, MEASUREMENTS, PASSWORDS, PREFIX, add_local_user, put_fragment, wait_until
from tests.integration.hubclient import HubUser
from tests.integration.browser import LAB, Browser
from tests.integration import desktop
from tests.integration.vscode import (INSTALLED, another_user_cannot_connect, build_in_container, log_in,
                                      open_terminal, open_vscode, refused_to_another_user, rss_mib, socket_only,
                                      type_in_terminal, vscode_from_the_launcher)

FRAGMENT = "60-apps.py"
IDLE_WATCH_S = 45  # an untouched VS Code tab sends ~9 keep-alives in this time
DESKTOP_IDLE_WATCH_S = 30  # an untouched desktop tab: noVNC's update requests, Xvnc's fences


@pytest.fixture(scope="module")
def vscode(container, base_url):
    """The drop-in on, code-server where `barehub apps install vscode` puts it, two users logged in."""
    container.run(f"mkdir -p {INSTALLED} && mount --bind -o ro {build_in_container()} {INSTALLED}")
    put_fragment(container, FRAGMENT, (DROP_INS / "apps.py").read_text().replace('\nAPPS = "vscode"', '\nAPPS = "vscode,desktop"'))
    container.run("systemctl reload jupyterhub", timeout=240)
    users = {}
    for name in ("wes", "xena"):
        add_local_user(container, name)
        users[name] = HubUser(base_url, name, PASSWORDS[name])
        assert users[name].login().status_code == 302
    yield users
    for user in users.values():
        stop(user)
    container.run(f"rm -f {PREFIX}/jupyterhub_config.d/{FRAGMENT} && systemctl reload jupyterhub", timeout=240)
    container.run(f"umount {INSTALLED}; rmdir {INSTALLED} {PREFIX}/apps", check=False)


def stop(user: HubUser) -> None:
    user.stop()


def test_vscode_opens_on_a_unix_socket_only_she_can_reach(container, vscode):
    wes, xena = vscode["wes"], vscode["xena"]
    wes.spawn()
    MEASUREMENTS["VS Code: first request to /user/NAME/vscode/ -> workbench page (s)"] = round(open_vscode(wes), 1)
    sock = socket_only(container, "wes")  # no TCP port of it; its directory hers, 0700
    assert re.fullmatch(r"/run/jupyterhub-apps/\d+/apps/vscode.sock", sock), sock  # the unit's own, gone at its stop
    another_user_cannot_connect(container, "xena", sock)
    refused_to_another_user(wes, xena)
    time.sleep(5)  # idle: no request since the page
    MEASUREMENTS["VS Code: memory of an idle code-server, its processes' RSS (MiB)"] = rss_mib(container, "wes")


def test_a_missing_code_server_is_said_on_the_vscode_page_at_once(container, vscode):
    """The launcher checks before it starts code-server: a site that has not installed it sees why, and how to fix
    it, on the page, within seconds, instead of a spinner until jsp's timeout."""
    xena = vscode["xena"]
    stop(vscode["wes"])  # (its code-server runs from the install)
    container.run(f"umount {INSTALLED}")
    try:
        xena.spawn()
        start = time.monotonic()
        r = xena.session.get(f"{xena.base}/user/xena/vscode/", timeout=60)
        waited = time.monotonic() - start
    finally:
        stop(xena)
        container.run(f"mount --bind -o ro {build_in_container()} {INSTALLED}")
    assert r.status_code == 503, (r.status_code, r.text[:1000])
    assert "VS Code cannot start" in r.text and "barehub apps install vscode" in r.text, r.text[:2000]
    assert f"there is no {INSTALLED}/lib/node_modules/code-server" in r.text, r.text[:2000]
    assert waited < 20, waited


def test_a_person_opens_vscode_from_the_launcher_saves_a_file_lab_sees_and_runs_it_in_vscodes_terminal(
        container, vscode, base_url):
    """In Chromium: log in, JupyterLab's launcher, the VS Code card (a new tab), a new file typed and saved there,
    the file in JupyterLab's file browser, then run in VS Code's terminal as the user. Screenshots kept in
    test-artifacts/apps/."""
    with Browser("apps") as b:
        log_in(b, base_url, "wes", PASSWORDS["wes"])
        b.wait_for_css(LAB, 120)
        MEASUREMENTS["VS Code: launcher click -> editor shown in Chromium (s)"] = \
            round(vscode_from_the_launcher(b, container, "wes"), 1)


def server_last_activity(user: HubUser) -> str:
    """What her server reports as its last activity (to the hub, and so to the culler); asking does not move it."""
    r = user.session.get(f"{user.base}/user/{user.name}/api/status", headers=user.auth(), timeout=30)
    r.raise_for_status()
    return r.json()["last_activity"]


def idle_then_used(user: HubUser, b: Browser, app: str, watch_s: float, use) -> None:
    """With only the app's tab open and nobody at it for `watch_s` s, her server's last activity (what the culler
    sees) stays where it was; `use()`, a person at it, moves it."""
    before = server_last_activity(user)
    time.sleep(watch_s)
    idle = server_last_activity(user)
    b.shot("idle-tab")
    use()
    used = server_last_activity(user)
    MEASUREMENTS[f"{app}: an open untouched tab, server's last activity moved in {watch_s} s (yes/no)"] = \
        "yes" if idle != before else "no"
    assert idle == before, (before, idle)
    assert used > idle, (idle, used)


def test_an_open_untouched_vscode_tab_is_idle_and_typing_in_it_is_use(container, vscode, base_url):
    """The culler's view of VS Code (idle-culler #55: code-server's keep-alives kept a server for ever). With only a
    VS Code tab open and nobody at it, the server's last activity stays where it was while the tab's keep-alives
    (every ~5 s) pass through; a command typed in VS Code's terminal moves it."""
    wes = vscode["wes"]
    wes.spawn()
    container.run("rm -f /home/wes/typed.out")
    with Browser("apps-idle") as b:
        log_in(b, base_url, "wes", PASSWORDS["wes"])
        b.wait_for_css(LAB, 120)
        b.get(f"{base_url}/user/wes/vscode/")  # VS Code alone: no JupyterLab tab polling the server
        b.wait_for_css(".monaco-workbench .part.editor", 120)
        open_terminal(b, container, "wes")
        time.sleep(10)  # VS Code's start-up settles (its requests are use, rightly)
        idle_then_used(wes, b, "VS Code", IDLE_WATCH_S, lambda: type_in_terminal(
            b, container, "wes", "echo typed > ~/typed.out",
            lambda: container.run("cat /home/wes/typed.out 2>/dev/null || true").stdout.strip() == "typed"))
    stop(wes)


def test_a_person_opens_the_desktop_from_the_launcher_and_types_in_its_terminal_and_an_untouched_tab_is_idle(
        container, vscode, base_url):
    """In Chromium: log in, JupyterLab's launcher, the Desktop card (a new tab), noVNC connected, a command typed
    into the desktop's xterm runs as her. On the machine: Xvnc on no TCP port, its RFB socket in her private
    directory, another user refused by the socket, by her X display and through the hub; a second user's desktop
    beside hers on the same machine. Then, with only the desktop's tab open and its screen changing every second, the
    server's last activity does not move while noVNC and Xvnc talk; a key does. Screenshots in test-artifacts/desktop/."""
    wes, xena = vscode["wes"], vscode["xena"]
    with Browser("desktop") as b:
        log_in(b, base_url, "wes", PASSWORDS["wes"])
        b.wait_for_css(LAB, 120)
        MEASUREMENTS["Desktop: launcher click -> desktop shown in Chromium (s)"] = \
            round(desktop.desktop_from_the_launcher(b, container, "wes"), 1)
        rfb, display = desktop.sockets_only(container, "wes")
        assert re.fullmatch(r"/run/jupyterhub-apps/\d+/apps/desktop-vnc.sock", rfb), rfb
        desktop.another_user_cannot_reach(container, "xena", rfb, display)
        wes.session.get(f"{wes.base}/user/wes/desktop/", timeout=60).raise_for_status()  # her server's login
        assert desktop.rfb_greeting(wes) == b"RFB 003.008\n"  # her own login: Xvnc's version through the hub
        assert desktop.rfb_greeting(wes, xena) == 403  # another user's login at his desktop's stream
        assert desktop.rfb_greeting(wes, xena, token=xena.token()) == 403  # and her own API token
        xena.spawn()  # a second desktop on the same machine, beside hers: its own display
        xena.session.get(f"{xena.base}/user/xena/desktop/", timeout=60).raise_for_status()
        assert desktop.rfb_greeting(xena) == b"RFB 003.008\n"
        assert desktop.sockets_only(container, "xena")[1] != display
        stop(xena)
        MEASUREMENTS["Desktop: memory of Xvnc, openbox and xterm, RSS (MiB)"] = desktop.rss_mib(container, "wes")

        # a screen that changes every second while nobody is at it (a clock, a program's output): Xvnc sends
        # updates, noVNC asks for more and answers Xvnc's fences, none of it use
        desktop.type_in_xterm(b, "while sleep 1; do date; done",
                              lambda: container.run("pgrep -u wes -x sleep || true").stdout.strip())
        time.sleep(5)
        idle_then_used(wes, b, "Desktop", DESKTOP_IDLE_WATCH_S, lambda: desktop.type_in_xterm(
            b, "echo again > ~/again",
            lambda: container.run("cat /home/wes/again 2>/dev/null || true").stdout.strip() == "again"))
    stop(wes)
