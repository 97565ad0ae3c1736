"""The core install path, end to end: bootstrap.py in a real systemd, real traefik, real PAM logins.

Tests run in file order and share one install (see conftest.py); the last one uninstalls it.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import threading
import time

import pytest
import requests

from tests.integration.helpers import (HTTP_PORT, HUB, MEASUREMENTS, PASSWORD, PREFIX, PROXY, USER, RequestLoop,
                                       add_local_user, bootstrap_cmd, exposure, hub_run, status_code, unit_properties, wait_until)
from tests.integration.hubclient import HubUser


@pytest.fixture(scope="module")
def alice(base_url) -> HubUser:
    user = HubUser(base_url, USER, PASSWORD)
    assert user.login().status_code == 302
    MEASUREMENTS["spawn to reachable through traefik (s)"] = round(user.spawn(), 2)
    return user


def test_bootstrap_reports_each_step_with_timings(installed):
    for n in range(1, 4):
        assert f"[{n}/4]" in installed.stdout and "done in" in installed.stdout
    assert "the hub answers through the proxy" in installed.stdout


def test_units_are_active_and_enabled(container, installed):
    for unit in (HUB, PROXY):
        assert container.run(f"systemctl is-active {unit}").stdout.strip() == "active"
        assert container.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"


def test_login_page_answers_through_traefik_on_the_public_port(base_url):
    r = requests.get(f"{base_url}/hub/login", timeout=10)
    assert r.status_code == 200
    assert 'name="username"' in r.text and 'name="password"' in r.text


def test_traefik_runs_unprivileged_and_its_api_is_loopback_only_behind_auth(container, installed):
    user = container.run(f"ps -o user= -p {container.main_pid(PROXY)}").stdout.strip()
    assert user == "barehub-proxy"
    listening = container.run("ss -ltnH").stdout
    assert "127.0.0.1:8099" in listening and "0.0.0.0:8099" not in listening and "*:8099" not in listening
    assert status_code("http://127.0.0.1:8099/api/http/routers") == 401  # no credentials, no routes
    assert status_code("http://127.0.0.1:8080/dashboard/") is None  # no default API entrypoint


def test_state_is_private_and_nothing_under_the_prefix_is_writable_by_others(container, installed):
    modes = container.run(f"stat -c '%a %U %n' {PREFIX}/state {PREFIX}/state/*").stdout.splitlines()
    assert modes[0].startswith("700 root ")
    for line in modes[1:]:
        assert line.startswith("600 root "), line
    for name in ("jupyterhub_cookie_secret", "traefik_api_password", "barehub_api_token", "jupyterhub_crypt_key",
                 "jupyterhub.sqlite"):
        assert any(line.endswith(f"/{name}") for line in modes[1:]), name
    world_writable = container.run(f"find {PREFIX} -perm -o+w ! -type l").stdout
    assert world_writable == ""
    # the routes: traefik's part readable by its group, in the hub's own directory; the bookkeeping private;
    # root's files in root's directory, nothing else there
    assert container.run(f"stat -c '%a %U %G' {PREFIX}/proxy/dynamic/routes/rules.yaml").stdout.split() == \
        ["640", "root", "barehub-proxy"]
    assert container.run(f"stat -c '%a %U' {PREFIX}/state/proxy_routes.json").stdout.split() == ["600", "root"]
    assert container.run(f"stat -c '%a %U %G' {PREFIX}/proxy/dynamic/routes").stdout.split() == \
        ["2750", "root", "barehub-proxy"]
    assert container.run(f"stat -c '%a %U %G' {PREFIX}/proxy/dynamic").stdout.split() == ["751", "root", "barehub-proxy"]
    assert container.run(f"ls -A {PREFIX}/proxy/dynamic/routes").stdout.split() == ["rules.yaml"]
    assert container.run(f"ls -A {PREFIX}/proxy/dynamic").stdout.split() == ["barehub.toml", "routes", "tls.toml"]


def test_secrets_never_appear_in_output_or_journal(container, installed):
    journal = container.run(f"journalctl -u {HUB} -u {PROXY} --no-pager").stdout
    for name in ("jupyterhub_cookie_secret", "traefik_api_password", "barehub_api_token", "jupyterhub_crypt_key"):
        secret = container.run(f"cat {PREFIX}/state/{name}").stdout.strip()
        assert secret and secret not in installed.stdout + installed.stderr and secret not in journal


SERVER_UNIT = f"jupyter-{USER}-singleuser.service"


def test_local_user_logs_in_with_pam_and_runs_code_in_own_server_unit(container, alice):
    assert alice.execute("import getpass, os; print(getpass.getuser(), os.getcwd())").split() == \
        [USER, f"/home/{USER}"]
    unit = unit_properties(container, SERVER_UNIT, "ActiveState", "Slice", "MainPID", "NoNewPrivileges",
                           "RuntimeDirectory", "TimeoutStopUSec")
    assert unit["ActiveState"] == "active" and unit["Slice"] == "jupyterhub-users.slice"
    assert unit["TimeoutStopUSec"] == "20s"  # a server that hangs on stop is killed after 20 s, not 90
    assert unit["NoNewPrivileges"] == "yes"  # no sudo from a notebook
    assert container.run(f"ps -o user= -p {unit['MainPID']}").stdout.strip() == USER
    # its own cgroup, not the hub's: the hub's restarts and its sandbox do not reach it
    assert f"jupyterhub-users.slice/{SERVER_UNIT}" in container.run(f"cat /proc/{unit['MainPID']}/cgroup").stdout
    # the environment file root's hub writes for the unit (its API token) lies where no user can reach,
    # so no user can replace it with a link for root to follow
    assert container.run("stat -c '%a %U' /run/jupyterhub /run/jupyterhub/users").stdout.split() == \
        ["700", "root", "700", "root"]
    own, apps = (f"/run/{d}" for d in unit["RuntimeDirectory"].split())
    assert own.startswith("/run/jupyterhub/users/") and container.run(f"test -d {own}", check=False).returncode == 0
    assert container.run(f"runuser -u {USER} -- ls {own}", check=False).returncode != 0
    # and one of the user's own, for her apps' sockets (barehub.apps), which no other user can enter
    assert apps.startswith("/run/jupyterhub-apps/") and container.run(f"stat -c '%a %U' {apps}").stdout.split() == \
        ["700", USER]
    assert container.run(f"runuser -u bob -- ls {apps}", check=False).returncode != 0


def test_wrong_password_is_refused(base_url):
    r = HubUser(base_url, USER, "not-the-password").login()
    assert r.status_code != 302 or "/hub/login" in r.headers.get("location", "")


def test_root_cannot_log_in_by_default(container, base_url):
    container.run("echo 'root:root-Secret-3' | chpasswd")
    r = HubUser(base_url, "root", "root-Secret-3").login()
    # refused with the login page again (a login that succeeds redirects, to /hub/spawn with no server yet)
    assert r.status_code == 403 and "Invalid username or password" in r.text, (r.status_code, r.headers)


def test_reload_applies_a_new_fragment(container, base_url, alice):
    container.run(f"""echo 'c.JupyterHub.template_vars = {{"announcement_login": "hello-from-fragment"}}' """
                  f"""> {PREFIX}/jupyterhub_config.d/50-announce.py""")
    container.run(f"systemctl reload {HUB}")
    took = wait_until(lambda: "hello-from-fragment" in requests.get(f"{base_url}/hub/login", timeout=5).text, 60)
    MEASUREMENTS["reload: fragment visible after (s)"] = round(took, 1)
    assert alice.execute("print('server kept running')").strip() == "server kept running"


def test_broken_fragment_fails_reload_and_the_hub_keeps_serving(container, base_url, alice):
    pid_before = container.main_pid(HUB)
    container.run(f"printf 'c.JupyterHub.admin_users = {{\"alice\"}}\\nc.Spawner.default_url = /lab\\n' "
                  f"> {PREFIX}/jupyterhub_config.d/60-broken.py")
    try:
        reload = container.run(f"systemctl reload {HUB}", check=False)
        assert reload.returncode != 0
        status = container.run(f"systemctl status {HUB} --no-pager -n 20", check=False).stdout
        assert f"{PREFIX}/jupyterhub_config.d/60-broken.py:2: SyntaxError" in status
        time.sleep(2)  # a restart, if one were wrongly queued, would have begun by now
        assert container.main_pid(HUB) == pid_before
        assert status_code(f"{base_url}/hub/login") == 200
        assert status_code(f"{base_url}/user/{USER}/api/status", headers=alice.auth()) == 200
    finally:
        container.run(f"rm -f {PREFIX}/jupyterhub_config.d/60-broken.py")


def test_unknown_option_is_reported_with_a_suggestion(container):
    container.run(f"echo 'c.Spawner.default_urll = \"/tree\"' > {PREFIX}/jupyterhub_config.d/70-typo.py")
    try:
        check = container.run(f"{PREFIX}/conda/bin/barehub check --prefix {PREFIX}", check=False)
        assert check.returncode == 1
        assert "70-typo.py:1: c.Spawner.default_urll is not an option of Spawner (did you mean default_url?)" \
            in check.stderr
    finally:
        container.run(f"rm -f {PREFIX}/jupyterhub_config.d/70-typo.py")


def test_killed_hub_is_restarted_and_user_server_answers_throughout(container, base_url, alice):
    pid = container.main_pid(HUB)
    with RequestLoop(f"{base_url}/user/{USER}/api/status", alice.auth()) as probe:
        container.run(f"kill -9 {pid}")
        took = wait_until(lambda: container.main_pid(HUB) not in (0, pid)
                          and status_code(f"{base_url}/hub/health") == 200, 120)
        time.sleep(0.5)
    MEASUREMENTS["hub killed -> answering through traefik again (s)"] = round(took, 1)
    assert probe.failed == 0 and probe.ok > 5
    # the killed hub's managed services went with it: one idle culler, the new hub's
    wait_until(lambda: len(container.run("pgrep -f '[j]upyterhub_idle_culler'", check=False).stdout.split()) == 1, 10)


def test_hub_restart_time(container, base_url):
    start = time.monotonic()
    container.run(f"systemctl restart {HUB}")
    wait_until(lambda: status_code(f"{base_url}/hub/health") == 200, 120, interval=0.05)
    MEASUREMENTS["hub start: systemctl restart -> /hub/health 200 via traefik (s)"] = \
        round(time.monotonic() - start, 2)


@pytest.mark.parametrize("action", ["restart", "reload"])
def test_hub_restart_and_reload_fail_no_request_to_hub_pages_or_user_servers(container, base_url, alice, action):
    pid, started = container.main_pid(HUB), hub_run(container)["started"]
    # and her POSTs to the hub's API: traefik keeps its connections to the hub open, and cannot send a POST again
    activity = {"last_activity": "2026-01-01T00:00:00Z"}  # (older than hers: nothing changes)
    with RequestLoop(f"{base_url}/user/{USER}/api/status", alice.auth()) as server, \
            RequestLoop(f"{base_url}/hub/login") as hub_pages, \
            RequestLoop(f"{base_url}/hub/api/users/{USER}/activity", alice.auth(), post=activity) as posts:
        time.sleep(0.5)
        container.run(f"systemctl {action} {HUB}")
        if action == "restart":
            wait_until(lambda: container.main_pid(HUB) not in (0, pid)
                       and status_code(f"{base_url}/hub/health") == 200, 120)
        time.sleep(1)
    if action == "reload":  # in place: the same unit process runs a new hub, which has answered by now
        assert container.main_pid(HUB) == pid and hub_run(container)["started"] != started
        assert status_code(f"{base_url}/hub/health") == 200
    MEASUREMENTS[f"systemctl {action} jupyterhub: failed requests (hub pages, user server)"] = \
        f"{hub_pages.failed}/{hub_pages.ok + hub_pages.failed}, {server.failed}/{server.ok + server.failed}"
    MEASUREMENTS[f"systemctl {action} jupyterhub: slowest answer (hub pages, user server) (s)"] = \
        f"{hub_pages.slowest:.2f}, {server.slowest:.2f}"
    MEASUREMENTS[f"systemctl {action} jupyterhub: failed POSTs to the hub's API, slowest (s)"] = \
        f"{posts.failed}/{posts.ok + posts.failed}, {posts.slowest:.2f}"
    assert hub_pages.failed == 0 and server.failed == 0 and posts.failed == 0, \
        (hub_pages.failures, server.failures, posts.failures)
    assert hub_pages.ok > 10 and server.ok > 10 and posts.ok > 10


def test_hub_stops_leave_no_left_over_processes(container):
    """Every hub stop so far (kill -9, restart, reload) ended the hub's cgroup cleanly: user servers are
    not in it, so systemd never finds processes left over from the previous hub."""
    journal = container.run(f"journalctl -u {HUB} --no-pager -o cat").stdout
    assert journal.count("Started jupyterhub.service") + journal.count("Started JupyterHub") >= 2  # restarts happened
    assert "left-over process" not in journal
    assert unit_properties(container, SERVER_UNIT, "ActiveState")["ActiveState"] == "active"


def oom_kills(container, cgroup: str) -> int:
    """Processes the OOM killer ended in a unit's cgroup (cgroup v2 memory.events, or v1 memory.oom_control)."""
    out = container.run(f"cat /sys/fs/cgroup{cgroup}/memory.events 2>/dev/null "
                        f"|| cat /sys/fs/cgroup/memory{cgroup}/memory.oom_control").stdout
    return int(re.search(r"^oom_kill (\d+)$", out, re.M).group(1))


def test_a_memory_limit_profile_is_enforced_on_the_server_unit(container, base_url, alice):
    """The local-limits drop-in with a small profile: the unit gets the limits; a cell allocating past the
    memory limit has its kernel killed by the kernel's OOM killer, while the server and the hub's view of it
    stay up (OOMPolicy=continue: one cell does not end the user's server)."""
    shipped = container.run("cat /mnt/src/jupyterhub_config.d/local-limits.py").stdout
    # (a whole CPU: with half of one, alice's server was not reachable within 120 s in three full test runs, five
    # lanes on 2 cores, and never alone; suspected: its start outlasted JupyterHub's http_timeout, 30 s)
    site = shipped.replace('"small": ("Small: 1 CPU, 2 GB", {"cpu_limit": 1.0, "mem_limit": "2G"})',
                           '"small": ("Small: 1 CPU, 400 MB", {"cpu_limit": 1.0, "mem_limit": "400M"})')
    assert site != shipped
    fragment = f"{PREFIX}/jupyterhub_config.d/30-local-limits.py"
    container.run(f"cat > {fragment}", input=site)
    try:
        container.run(f"systemctl reload {HUB}")
        alice.stop()
        assert container.run(f"systemctl is-active {SERVER_UNIT}", check=False).returncode != 0
        alice.spawn(form={"profile": "small"})
        unit = unit_properties(container, SERVER_UNIT, "MemoryMax", "MemorySwapMax", "CPUQuotaPerSecUSec",
                               "ControlGroup")
        assert (unit["MemoryMax"], unit["MemorySwapMax"], unit["CPUQuotaPerSecUSec"]) == (str(400 * 2**20), "0", "1s")
        shown = container.run("barehub status").stdout
        assert f"{SERVER_UNIT}" in shown and f"user {USER}, active" in shown and "(limit: 400.0 MiB)" in shown
        assert oom_kills(container, unit["ControlGroup"]) == 0
        with pytest.raises(AssertionError, match="kernel died|no reply"):  # the kernel dies mid-cell
            alice.execute("b = b'x' * (600 * 2**20); print('allocated')", timeout=20)
        assert oom_kills(container, unit["ControlGroup"]) >= 1
        assert alice.execute("print('server lives')").strip() == "server lives"
        mine = alice.api("GET", f"users/{USER}", timeout=10)
        assert mine.status_code == 200 and mine.json()["server"]
    finally:
        container.run(f"rm -f {fragment}")
        container.run(f"systemctl reload {HUB}")


def test_the_hub_notices_a_server_unit_that_dies(container, base_url, alice):
    container.run(f"systemctl kill --signal=KILL {SERVER_UNIT}")
    took = wait_until(lambda: not alice.api("GET", f"users/{USER}", timeout=10).json()["server"], 60, interval=1)
    MEASUREMENTS["server unit killed -> the hub shows it stopped (s)"] = round(took, 1)
    assert status_code(f"{base_url}/user/{USER}/api/status", headers=alice.auth()) != 200
    alice_again = HubUser(base_url, USER, PASSWORD)
    assert alice_again.login().status_code == 302
    alice_again.spawn()  # and the user starts it again


def test_a_start_right_after_a_stop_waits_until_systemd_lets_go_of_her_last_unit(container, alice):
    """systemd unloads a stopped unit only once it knows its cgroup is empty, and systemd-run refuses a name it
    still holds. A full test run (cgroup v1) met it: a start 0.1 s after a stop, the server failed after 60 s.
    Here another unit, ordered after hers, holds it loaded as long as that unit runs: while it does for good, the
    start fails within its bounded wait and the spawn page names the unit; once it lets go 5 s after a start, the
    server comes up."""
    holder = "barehub-test-holds-alice.service"  # (a stand-in for systemd's own delay: it makes it last)

    def stopped_and_held() -> None:
        """Her server stopped while the holder runs: her unit inactive, and still loaded."""
        if alice.api("GET", f"users/{USER}", timeout=10).json()["server"] is None:
            alice.spawn()
        container.run(f"systemd-run --unit {holder} --property=After={SERVER_UNIT} sleep 600")
        alice.stop()
        assert container.run(f"systemctl show -P LoadState {SERVER_UNIT}").stdout.strip() == "loaded"

    try:
        stopped_and_held()
        began = time.monotonic()
        r = alice.api("POST", f"users/{USER}/server")
        assert r.status_code in (201, 202, 500), r.text
        events = alice.progress_events(until=lambda e: e.get("failed"), timeout=60)
        failed_after = time.monotonic() - began
        assert f"systemd still holds the unit {SERVER_UNIT.removesuffix('.service')}" in events[-1]["message"]
        assert failed_after < 40, failed_after  # its 20 s wait, not upstream's 60 s start timeout
        container.run(f"systemctl stop {holder}")

        stopped_and_held()
        threading.Timer(5, lambda: container.run(f"systemctl stop {holder}")).start()
        took = alice.spawn(timeout=60)
        MEASUREMENTS["server started while systemd held her last unit 5 s more (s)"] = round(took, 1)
        assert took > 4.5, took  # it did wait for the name
    finally:
        container.run(f"systemctl stop {holder}", check=False)


def test_a_server_systemd_cannot_run_fails_the_start_at_once_saying_why(container, alice):
    """The start hands her unit to systemd without waiting (systemd-run --no-block) and watches it come up: a
    property systemd does not know (a fragment's typo) fails the start with systemd's own words, and a server
    program that exits at once fails it as soon as systemd says so. Upstream ignored systemd-run's exit status
    and polled the unit for its 60 s start timeout, then said only that the server did not start."""
    fragment = f"{PREFIX}/jupyterhub_config.d/40-broken-server.py"
    cases = [('c.SystemdSpawner.unit_extra_properties = {"MemoryMaxx": "2G"}',
              "systemd refused to start the unit jupyter-alice-singleuser: Unknown assignment: MemoryMaxx=2G"),
             ('c.Spawner.cmd = ["/bin/false"]',
              "the server's unit jupyter-alice-singleuser ended before it listened on port")]
    try:
        alice.stop()
        for line, said in cases:
            container.run(f"cat > {fragment}", input=line + "\n")
            container.run(f"systemctl reload {HUB}")
            began = time.monotonic()
            r = alice.api("POST", f"users/{USER}/server")
            assert r.status_code in (201, 202, 500), r.text
            events = alice.progress_events(until=lambda e: e.get("failed"), timeout=60)
            took = time.monotonic() - began
            assert said in events[-1]["message"], events[-1]
            assert took < 20, took
            MEASUREMENTS[f"a start systemd cannot run ({line.split('=')[0].strip()}) failed after (s)"] = round(took, 1)
            wait_until(lambda: alice.api("GET", f"users/{USER}", timeout=10).json()["pending"] is None, 30)
    finally:
        container.run(f"rm -f {fragment}")
        container.run(f"systemctl reload {HUB}")
    alice.spawn()  # and her next start, once the site has fixed its fragment, works


# Another account's listener on the port her server was handed: a watcher (root, a stand-in for an attacker's luck or
# for a scan of /proc/net/tcp) reads the port from her fresh environment file and starts it as bob at once, before
# her JupyterLab binds. It records every request it gets, and whether it carried a cookie.
SQUATTER = """import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("/tmp/squatter-bob.log", "a") as log:
            log.write(f"{self.path} cookie={bool(self.headers.get('Cookie'))}\\n")
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"bob's")
    do_HEAD = do_GET
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
SQUAT_WATCHER = """since=$(date +%s.%N)
for i in $(seq 3000); do
  f=$(find /run/jupyterhub/users -name 'jupyter-alice-singleuser.env' -newermt "@$since" 2>/dev/null | head -1)
  if [ -n "$f" ]; then
    port=$(sed -n "s|^JUPYTERHUB_SERVICE_URL=.*:\\([0-9]*\\)/.*|\\1|p" "$f")
    echo "$port" > /tmp/squatted-port
    exec runuser -u bob -- python3 /tmp/squatter.py "$port"
  fi
  sleep 0.01
done
"""


def test_a_port_another_account_takes_first_is_never_her_route(container, base_url, alice):
    """Any account on the hub's machine can bind the port her server was handed, in the seconds before her server
    does. Upstream then routes /user/alice/ to that program (JupyterHub waits only for something to answer there),
    and her browser sends it her server's cookie. Here her start fails, saying so, and the program gets nothing."""
    squat = "barehub-test-squatter.service"
    add_local_user(container, "bob")
    container.run("cat > /tmp/squatter.py", input=SQUATTER)
    container.run("cat > /tmp/squat-watcher.sh", input=SQUAT_WATCHER)
    container.run("chmod 644 /tmp/squatter.py; rm -f /tmp/squatter-bob.log /tmp/squatted-port")
    if alice.api("GET", f"users/{USER}", timeout=10).json()["server"] is not None:
        alice.stop()
    try:
        container.run(f"systemd-run --unit {squat} sh /tmp/squat-watcher.sh")
        r = alice.api("POST", f"users/{USER}/server")
        assert r.status_code in (201, 202, 503), r.text
        events = alice.progress_events(until=lambda e: e.get("failed") or e.get("ready"), timeout=90)
        port = container.run("cat /tmp/squatted-port").stdout.strip()
        assert port and container.run(f"systemctl is-active {squat}", check=False).stdout.strip() == "active"
        assert events[-1].get("failed"), events[-1]  # not routed to bob's listener as her ready server
        assert f"Port {port}, handed to your server, was taken by another account's program" in events[-1]["message"]
        log = container.run("cat /tmp/squatter-bob.log", check=False).stdout
        assert log == "", f"bob's listener was asked: {log}"  # neither the hub's check nor her cookie reached it
        assert status_code(f"{base_url}/user/{USER}/api/status", headers=alice.auth()) != 200
    finally:
        container.run(f"systemctl stop {squat}", check=False)
    assert container.run("cat /tmp/squatter-bob.log", check=False).stdout == ""
    MEASUREMENTS["start again after another account took her port (s)"] = round(alice.spawn(timeout=120), 1)


def stopped(user: HubUser) -> bool:
    model = user.api("GET", f"users/{user.name}", timeout=10).json()
    return model["server"] is None and model["pending"] is None


def test_a_server_that_dies_loses_its_route_at_once(container, base_url, alice):
    """Her server killed (out of memory, a crash): its port is free at once, and while her route still leads there
    any account can listen on it and get what her open JupyterLab sends. The unit's ExecStopPost tells the hub,
    which polls at once: the route goes within seconds, where the periodic poll took up to 15 s (3 kills: by chance
    alone all three would be noticed that fast about 1 time in 100)."""
    took = []
    for _ in range(3):
        alice.spawn()
        url = f"{base_url}/user/{USER}/api/status"
        assert status_code(url, headers=alice.auth()) == 200
        container.run(f"kill -9 {container.main_pid(SERVER_UNIT)}")
        begun = time.monotonic()
        wait_until(lambda: status_code(url, headers=alice.auth(), allow_redirects=False) not in (None, 200, 502), 40,
                   0.05)
        took.append(round(time.monotonic() - begun, 2))  # traefik's 502 (no server behind the route) until then
        wait_until(lambda: stopped(alice), 30)  # (JupyterHub's own stop of it done: else Start finds it "active")
    MEASUREMENTS["a killed server's route gone after (s, 3 kills)"] = str(took)
    assert max(took) < 3, took
    alice.spawn()


def test_killed_traefik_comes_back_with_its_routes(container, base_url, alice):
    pid = container.main_pid(PROXY)
    container.run(f"kill -9 {pid}")
    wait_until(lambda: container.main_pid(PROXY) not in (0, pid), 30)
    wait_until(lambda: status_code(f"{base_url}/user/{USER}/api/status", headers=alice.auth()) == 200, 30)
    assert status_code(f"{base_url}/hub/login") == 200


def test_status_shows_units_versions_and_running_servers(container):
    out = container.run("barehub status").stdout  # the CLI is linked onto PATH
    assert "jupyterhub.service" in out and "active, enabled" in out
    assert "jupyterhub 6.1.1" in out and "traefik 3.7.15" in out
    assert f"running servers: 1 ({USER})" in out
    assert f"{SERVER_UNIT}" in out and f"user {USER}, active" in out
    assert f"http://localhost:{HTTP_PORT}/" in out


def sha(container, path: str) -> str:
    return hashlib.sha256(container.run(f"cat {path}").stdout.encode()).hexdigest()


def test_second_bootstrap_changes_nothing_and_keeps_secrets_and_database(container, base_url, alice):
    alice.auth()  # her token, made before the run
    before = {u: container.main_pid(u) for u in (HUB, PROXY)}
    secret = sha(container, f"{PREFIX}/state/jupyterhub_cookie_secret")
    start = time.monotonic()
    rerun = container.run(bootstrap_cmd(), timeout=600)
    MEASUREMENTS["second bootstrap run, no-op (s)"] = round(time.monotonic() - start, 1)
    assert "nothing to change" in rerun.stdout
    assert {u: container.main_pid(u) for u in (HUB, PROXY)} == before
    assert sha(container, f"{PREFIX}/state/jupyterhub_cookie_secret") == secret
    # the token lives in the database: it still works
    assert alice.api("GET", "user").status_code == 200


def test_bootstrap_killed_midway_converges_when_run_again(container, base_url, alice):
    alice.auth()  # her token, made before the run
    secret = sha(container, f"{PREFIX}/state/jupyterhub_cookie_secret")
    container.run(f"rm -f {PREFIX}/conda/.barehub-env {PREFIX}/conda/bin/python")  # forces a rebuild
    run = subprocess.Popen(["nsenter", "-t", str(container.pid), "-a", "/bin/sh", "-c", bootstrap_cmd()],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # midway: the env is being rebuilt (pip installs into it) by this run, which has not ended
    wait_until(lambda: container.run("pgrep -f '[p]ip install'", check=False).returncode == 0, 120, interval=0.1)
    assert run.poll() is None
    killed = container.run("pkill -9 -f '[b]ootstrap.py'", check=False)
    container.run("pkill -9 -f '[p]ip install'", check=False)
    run.wait(30)
    assert killed.returncode == 0  # the kill found the run
    assert container.run(f"test -e {PREFIX}/conda/.barehub-env", check=False).returncode != 0  # left unfinished
    rerun = container.run(bootstrap_cmd(), timeout=600)
    assert "the hub answers through the proxy" in rerun.stdout
    assert sha(container, f"{PREFIX}/state/jupyterhub_cookie_secret") == secret
    assert alice.api("GET", "user").status_code == 200


def test_proxy_unit_security_exposure(container, installed):
    assert exposure(container, PROXY, "proxy") <= 1.5  # README's figure ("OK" on systemd's scale)


def test_root_hub_unit_is_sandboxed_and_pam_login_and_spawn_still_work(container, base_url, alice):
    assert exposure(container, HUB, "root hub") <= 2.4  # README's figure; was 9.6 with servers in its cgroup
    # this module's logins (PAM) and spawns ran under this unit; one more, end to end
    assert alice.execute("print('under the sandboxed hub')").strip() == "under the sandboxed hub"


# ------------------------------------------------------------- bad input


def test_non_root_run_is_refused_with_a_hint(container):
    r = container.run("runuser -u nobody -- /usr/bin/python3 /mnt/src/bootstrap.py --env-backend pip", check=False)
    assert r.returncode == 1
    assert "must run as root" in r.stderr and "sudo" in r.stderr


def test_port_in_use_is_named_with_its_owner(container):
    container.run("systemd-run --unit=squatter /usr/bin/python3 -m http.server 28090 --bind 127.0.0.1")
    try:
        wait_until(lambda: "28090" in container.run("ss -ltnH").stdout, 10)
        r = container.run("/usr/bin/python3 /mnt/src/bootstrap.py --env-backend pip --prefix /opt/other "
                          "--http-port 28090", check=False)
        assert r.returncode == 1
        assert "port 28090 is already in use by python3 (pid" in r.stderr and "--http-port" in r.stderr
        assert container.run("test -e /opt/other", check=False).returncode != 0  # nothing was created
    finally:
        container.run("systemctl stop squatter", check=False)


def test_unreachable_index_fails_clearly_and_leaves_the_running_hub_alone(container, base_url):
    pid = container.main_pid(HUB)
    r = container.run("/usr/bin/python3 /mnt/src/bootstrap.py --env-backend pip --prefix /opt/other "
                      "--http-port 28091 --index-url http://127.0.0.1:9/simple", check=False, timeout=300)
    assert r.returncode == 1
    assert "the package index is unreachable" in r.stderr and "--wheelhouse" in r.stderr
    assert container.main_pid(HUB) == pid and status_code(f"{base_url}/hub/login") == 200
    container.run("rm -rf /opt/other")


def test_wrong_flags_get_a_usage_error(container):
    r = container.run("/usr/bin/python3 /mnt/src/bootstrap.py --env-backend conda --wheelhouse /x", check=False)
    assert r.returncode == 2 and "--env-backend pip" in r.stderr
    r = container.run("/usr/bin/python3 /mnt/src/bootstrap.py --tls-cert /c.pem", check=False)
    assert r.returncode == 2 and "--tls-cert and --tls-key go together" in r.stderr


# ------------------------------------------------------------- last: uninstall


def test_uninstall_purge_stops_everything_and_removes_the_prefix(container, base_url):
    # seen once in CI: a server unit of the browser test's user "failed"; recorded to find out why
    states = container.run("systemctl list-units --all --plain --no-legend 'jupyter-*' | "
                           "while read unit rest; do systemctl show -p Id -p ActiveState -p Result --value $unit "
                           "| paste -sd' '; done", check=False).stdout.strip()
    MEASUREMENTS["server units before uninstall (unit, state, result)"] = states.replace("\n", "; ") or "none"
    container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    assert container.run(f"systemctl is-active {HUB} {PROXY}", check=False).stdout.split() == \
        ["inactive", "inactive"]
    assert container.run(f"test -e {PREFIX}", check=False).returncode != 0
    assert container.run("test -e /etc/systemd/system/jupyterhub.service", check=False).returncode != 0
    # the users' server units went with it
    assert container.run("pgrep -f '[j]upyterhub-singleuser'", check=False).returncode != 0
    assert container.run("systemctl list-units --plain --no-legend 'jupyter-*'").stdout.strip() == ""
    assert status_code(f"{base_url}/hub/login") is None


def test_fresh_install_with_a_non_root_hub(container, base_url):
    """--hub-user: the hub runs unprivileged and owns its state; reload still works.

    A non-root hub cannot start other users' servers with the default spawner; sites pair it with a
    sudo- or batch-based spawner (see the drop-ins).
    """
    container.run("id jhub || useradd --system --create-home --home-dir /var/lib/jhub jhub")
    # a site's fragment that is broken from the start: the installer refuses to start the hub on it
    container.run(f"mkdir -p {PREFIX}/jupyterhub_config.d && "
                  f"echo 'c.Spawner.start_timeout = \"soon\"' > {PREFIX}/jupyterhub_config.d/10-site.py")
    refused = container.run(bootstrap_cmd("--hub-user", "jhub"), check=False, timeout=900)
    assert refused.returncode == 1
    assert f"{PREFIX}/jupyterhub_config.d/10-site.py:1: c.Spawner.start_timeout:" in refused.stderr
    assert container.run(f"systemctl is-active {HUB}", check=False).stdout.strip() != "active"
    container.run(f"rm {PREFIX}/jupyterhub_config.d/10-site.py")
    container.run(bootstrap_cmd(), timeout=900)  # --hub-user was remembered
    try:
        assert container.run(f"ps -o user= -p {container.main_pid(HUB)}").stdout.strip() == "jhub"
        assert container.run(f"stat -c '%U %a' {PREFIX}/state {PREFIX}/state/jupyterhub_cookie_secret"
                             ).stdout.split() == ["jhub", "700", "jhub", "600"]
        assert status_code(f"{base_url}/hub/login") == 200
        pid = container.main_pid(HUB)
        container.run(f"systemctl reload {HUB}")  # returns once the reloaded hub answers through traefik
        assert container.main_pid(HUB) == pid  # restarted in place
        assert status_code(f"{base_url}/hub/health") == 200
        # sandboxed like the root hub, and without capabilities of its own
        assert exposure(container, HUB, "--hub-user hub") <= 1.5  # README's figure, below the root hub's
    finally:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
