"""VS Code (code-server through jupyter-server-proxy) as the tests see it, on a local server and in a Slurm job alike:
opening it as the user, finding its processes and its socket on the node, and another user of that node trying it.
The build itself is testbed/code_server.py's."""
from __future__ import annotations

import time

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from testbed.code_server import code_server_build
from testbed.web import wait_until
from tests.integration.browser import Browser
from tests.integration.helpers import CACHE, CACHE_IN_CONTAINER, PREFIX
from tests.integration.hubclient import HubUser

INSTALLED = f"{PREFIX}/apps/code-server"  # where `barehub apps install vscode` puts it
WORKBENCH = "vscode-workbench-web-configuration"  # the meta tag code-server's workbench page carries


def build_in_container() -> str:
    """The tests' code-server build as a container sees it (the tests' cache, bound read-only)."""
    return f"{CACHE_IN_CONTAINER}/{code_server_build().relative_to(CACHE)}"


def open_vscode(user: HubUser, server: str = "", timeout: float = 120) -> float:
    """Seconds until her /vscode/ answers with VS Code's workbench (jsp starts code-server at the first request)."""
    url = f"{user.base}/user/{user.name}/{server + '/' if server else ''}vscode/"
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        r = user.session.get(url, timeout=60)
        if r.status_code == 200 and WORKBENCH in r.text:
            return time.monotonic() - start
        assert r.status_code in (200, 302, 404, 502, 503), (r.status_code, r.text[:2000])
        time.sleep(0.5)
    raise AssertionError(f"VS Code of {user.name} did not answer within {timeout} s: {r.status_code} {r.text[:2000]}")


def code_server_pids(node, user: str) -> list[int]:
    """Her code-server processes on the node (its node, from the install, runs them all)."""
    out = node.run(f"pgrep -u {user} -f {INSTALLED}/ || true").stdout
    return [int(pid) for pid in out.split()]


def socket_only(node, user: str) -> str:
    """Her VS Code's socket on the node, after checking that none of its processes listens on a TCP port and that
    the socket's directory is hers alone (0700)."""
    pids = code_server_pids(node, user)
    assert pids, node.run("ps -ef").stdout
    listening = node.run("ss -Hltnp").stdout
    assert not [line for line in listening.splitlines() for pid in pids if f"pid={pid}," in line], listening
    sockets = node.run("ss -Hlxp").stdout
    theirs = [line.split()[4] for line in sockets.splitlines() if any(f"pid={pid}," in line for pid in pids)]
    found = [path for path in theirs if path.endswith("/vscode.sock")]
    assert len(found) == 1, sockets
    directory = found[0].rsplit("/", 1)[0]
    assert node.run(f"stat -c '%a %U' {directory}").stdout.split() == ["700", user]
    # every other socket of code-server's too (its IPC handles: in a shared /tmp they would be anyone's to call)
    assert [path for path in theirs if path.rsplit("/", 1)[0] != directory] == [], sockets
    return found[0]


def another_user_cannot_connect(node, other: str, sock: str) -> None:
    """Another user's shell on the same node: curl gets no answer, and the reason is the directory's mode."""
    tried = node.run(f"runuser -u {other} -- curl -sS --max-time 5 --unix-socket {sock} http://app/", check=False)
    assert tried.returncode == 7 and WORKBENCH not in tried.stdout, tried  # curl: "Couldn't connect to server"
    why = node.run(f"runuser -u {other} -- python3 -c 'import socket; socket.socket(socket.AF_UNIX).connect(\"{sock}\")'",
                   check=False)
    assert "PermissionError: [Errno 13] Permission denied" in why.stderr, why
    answer = node.run(f"curl -sS --max-time 5 -o /dev/null -w '%{{http_code}}' --unix-socket {sock} http://app/",
                      check=False).stdout  # while the socket does answer (root may)
    assert answer in ("200", "302"), answer


def refused_to_another_user(owner: HubUser, other: HubUser) -> None:
    """Her /vscode/ through the proxy, as another user: with his login, then with his own API token."""
    url = f"{owner.base}/user/{owner.name}/vscode/"
    theirs = other.session.get(url, timeout=30)  # follows the OAuth round-trip, as a browser would
    assert theirs.status_code == 403 and WORKBENCH not in theirs.text, theirs.status_code
    with_token = other.session.get(url, headers=other.auth(), timeout=30, allow_redirects=False)
    assert with_token.status_code == 403 and WORKBENCH not in with_token.text, with_token.status_code


def rss_mib(node, user: str) -> int:
    """Her code-server processes' resident memory."""
    pids = ",".join(map(str, code_server_pids(node, user)))
    return round(sum(int(v) for v in node.run(f"ps -o rss= -p {pids}").stdout.split()) / 1024)


# ------------------------------------------------------------------------------------------ in a browser

def log_in(b: Browser, base_url: str, name: str, password: str) -> None:
    b.get(f"{base_url}/hub/login")
    b.wait_for_css("#login_submit")
    b.fill({"username": name, "password": password})
    b.click("#login_submit")


def vscode_from_the_launcher(b: Browser, node, user: str) -> float:
    """From JupyterLab (shown): the launcher's VS Code card, a new file typed and saved in VS Code, the file in
    JupyterLab's file browser, then run in VS Code's terminal (checked on the node the server runs on). Returns the
    seconds from the card's click to VS Code's editor shown."""
    name, output = "hello_vscode.py", f"/home/{user}/hello_vscode.out"  # (a server unit may have a private /tmp)
    node.run(f"rm -f /home/{user}/{name} {output}")
    card = '.jp-LauncherCard[data-category="Other"]'
    b.wait_for(lambda b: [c for c in b.driver.find_elements(By.CSS_SELECTOR, card) if "VS Code" in c.text],
               60, "VS Code's launcher card")
    b.shot("launcher")
    lab = b.driver.current_window_handle
    clicked = time.monotonic()
    next(c for c in b.driver.find_elements(By.CSS_SELECTOR, card) if "VS Code" in c.text).click()
    b.wait_for(lambda b: len(b.driver.window_handles) > 1, 30, "VS Code's tab")
    vscode_tab = next(h for h in b.driver.window_handles if h != lab)
    b.driver.switch_to.window(vscode_tab)
    b.wait_for_css(".monaco-workbench .part.editor", 120)
    shown = time.monotonic() - clicked
    b.shot("vscode")

    command(b, "File: New Untitled Text File")
    b.wait_for_css(".editor-instance .monaco-editor textarea", 30)
    time.sleep(1)
    ActionChains(b.driver).send_keys('import getpass; print("hello from", getpass.getuser(), 6 * 7)').perform()
    b.shot("typed")
    box = command(b, "File: Save As...")
    b.wait_for(lambda b: box.get_attribute("value").startswith(f"/home/{user}"), 30, "the Save As path")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(f"/home/{user}/{name}", Keys.ENTER)
    saved = f"cat /home/{user}/{name} 2>/dev/null || true"  # (made empty first, then written)
    b.wait_for(lambda b: "6 * 7" in node.run(saved).stdout, 30, "the file saved")
    b.shot("saved")
    assert node.run(f"stat -c %U /home/{user}/{name}").stdout.strip() == user

    b.driver.switch_to.window(lab)  # JupyterLab's file browser shows it
    b.wait_for(lambda b: [e for e in b.driver.find_elements(By.CSS_SELECTOR, ".jp-DirListing-item")
                          if name in e.text], 60, "the file in JupyterLab's file browser")
    b.shot("lab-sees-it")

    b.driver.switch_to.window(vscode_tab)
    command(b, "View: Close All Editors")  # (no key meant for the terminal can reach the file: seen in CI)
    open_terminal(b, node, user)
    type_in_terminal(b, node, user, f"python3 {name} | tee {output}",
                     lambda: f"hello from {user} 42" in node.run(f"cat {output} 2>/dev/null || true").stdout)
    b.shot("ran-in-terminal")
    assert node.run(f"stat -c %U {output}").stdout.strip() == user
    return shown


def command(b: Browser, title: str):
    """A command of VS Code's palette (F1: the browser keeps Ctrl+N and the like for itself); returns the quick
    input box, which a command that asks for more (Save As) keeps open. Tried again if a dialog VS Code opened
    meanwhile (the folder's trust) took the palette away."""
    def row(b):  # the command itself, not the first of the fuzzy matches ("Compare New Untitled Text Files")
        return [e for e in b.driver.find_elements(By.CSS_SELECTOR, ".quick-input-list .monaco-list-row")
                if e.text.splitlines()[:1] == [title]]
    for attempt in range(3):
        trust_her_home_if_asked(b)
        ActionChains(b.driver).send_keys(Keys.F1).perform()
        b.wait_for_css(".quick-input-widget .quick-input-box input", 30)
        box = b.driver.find_element(By.CSS_SELECTOR, ".quick-input-widget .quick-input-box input")
        box.send_keys(title)
        try:
            b.wait_for(row, 10, f"the command {title!r}")
        except AssertionError:
            ActionChains(b.driver).send_keys(Keys.ESCAPE).perform()
            continue
        row(b)[0].click()
        return box
    raise AssertionError(f"VS Code's palette did not offer {title!r}")


def open_terminal(b: Browser, node, user: str) -> None:
    """A new terminal of VS Code's, drawn in the page, its shell started on the node and waiting at its prompt
    (xterm draws on a canvas: the prompt is not in the page's text, so the node is asked). A new shell, not one
    left from her last visit, which VS Code restores as it loads (seen: an idle window begun before it had)."""
    before = shells_at_prompt(node, user)
    command(b, "Terminal: Create New Terminal")
    # VS Code asks whether she trusts the folder once the terminal is drawn, its input already there; the shell starts
    # only when she answers, and keys typed meanwhile go to the dialog (seen here: the likely CI failure)
    b.wait_for(lambda b: not trust_her_home_if_asked(b)
               and b.driver.find_elements(By.CSS_SELECTOR, ".terminal-wrapper .xterm-helper-textarea")
               and shells_at_prompt(node, user) > before, 60, f"a new shell of {user}'s at its prompt")


def shells_at_prompt(node, user: str) -> int:
    """Her shells that VS Code's pty host started, each on a pseudo-terminal, in its foreground (ps's '+') and
    sleeping: reading her next line. (Not another terminal of hers, a desktop's xterm.)"""
    rows = [line.split(None, 5) for line in node.run(f"ps -u {user} -o pid=,ppid=,tty=,stat=,comm=,args=").stdout
            .splitlines()]
    args = {row[0]: row[5] for row in rows if len(row) == 6}
    return sum(1 for _, ppid, tty, stat, comm, _ in (row for row in rows if len(row) == 6)
               if tty.startswith("pts/") and "+" in stat and stat.startswith("S") and comm in ("bash", "sh", "dash")
               and "--type=ptyHost" in args.get(ppid, ""))


def trust_her_home_if_asked(b: Browser) -> bool:
    """VS Code asks, before a terminal (also one it restores from her last visit), whether to trust the folder it
    opened, the user's home: she does. Whether it asked."""
    for button in b.driver.find_elements(By.CSS_SELECTOR, ".monaco-dialog-box .monaco-button"):
        if button.text == "Trust Folder & Continue":
            b.shot("trust-her-home")
            button.click()
            return True
    return False


def type_in_terminal(b: Browser, node, user: str, line: str, done, timeout: float = 60) -> None:
    """Type `line` into VS Code's terminal until `done()` says it ran. Each try first lets VS Code itself move the
    focus to its terminal ("Terminal: Focus Terminal", as code-server's own tests do) and sees the terminal's input
    focused: a focus set from outside was lost to VS Code's own focus handling (CI), and keys typed before the
    shell's prompt are lost (seen here). On failure, says where the keys went and what her shells were doing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trust_her_home_if_asked(b)
        command(b, "Terminal: Focus Terminal")
        try:
            b.wait_for(lambda b: terminal_focused(b) and shells_at_prompt(node, user), 15, "the terminal focused")
        except AssertionError:
            continue
        ActionChains(b.driver).send_keys(line, Keys.ENTER).perform()
        try:
            wait_until(done, 10)
            return
        except AssertionError:
            continue
    b.shot("terminal-did-not-run")
    raise AssertionError(f"{line!r} typed in VS Code's terminal did not run within {timeout} s; the focus: "
                         f"{focused(b)!r}; dialogs and notifications: {notices(b)!r}; {user}'s processes:\n"
                         + node.run(f"ps -u {user} -o pid,ppid,tty,stat,args", check=False).stdout)


def terminal_focused(b: Browser) -> bool:
    return b.driver.execute_script(
        "return !!document.activeElement && document.activeElement.classList.contains('xterm-helper-textarea')")


def focused(b: Browser) -> str:
    """What has the page's focus, as a person would name it (its class and label)."""
    return b.driver.execute_script(
        "const e = document.activeElement; return e ? e.tagName + '.' + e.className + ' ' +"
        " (e.getAttribute('aria-label') || '') : 'nothing'")


def notices(b: Browser) -> list[str]:
    """The text of VS Code's dialogs and notifications shown."""
    css = ".monaco-dialog-box, .notifications-toasts .notification-toast"
    return [e.text for e in b.driver.find_elements(By.CSS_SELECTOR, css) if e.is_displayed()]
