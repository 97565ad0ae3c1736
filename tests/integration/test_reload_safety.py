"""Admin actions never take the hub down: reloads of fragments that fail at start, fragments that would drop
barehub's base, a sub-path behind a site's nginx, a non-default prefix, umask 027, concurrent and refused runs.

Its own install (the one of test_install.py ends uninstalled); the module ends by purging it.
"""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.integration import pki
from tests.integration.helpers import (BASE_URL, HTTP_PORT, HUB, MEASUREMENTS, PASSWORD, PASSWORDS, PREFIX, PROXY, USER,
                                       RequestLoop, bootstrap_cmd, status_code, this_release, wait_until)
from tests.integration.hubclient import HubUser

CONFIG_D = f"{PREFIX}/jupyterhub_config.d"
SQUATTED = 28999  # another service of the site listens here


@pytest.fixture(scope="module")
def hub(container):
    proc = container.run(bootstrap_cmd(), check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield BASE_URL
    container.run(f"barehub uninstall --purge --prefix {PREFIX}", check=False)


@pytest.fixture(scope="module")
def alice(hub) -> HubUser:
    return HubUser.working(hub, USER, PASSWORD)


@pytest.fixture(scope="module")
def server_headers(alice) -> dict:
    return alice.auth()


def reload(container) -> tuple[int, float, str]:
    start = time.monotonic()
    proc = container.run(f"systemctl reload {HUB}", check=False, timeout=300)
    return proc.returncode, time.monotonic() - start, proc.stderr


def hub_status(container) -> str:
    """What the admin reads: the unit's state and its journal (user servers log there too, so more lines)."""
    return (container.run(f"systemctl status {HUB} --no-pager -n 0", check=False).stdout
            + container.run(f"journalctl -u {HUB} --no-pager -n 400", check=False).stdout)


# Each passes `barehub check`'s old static rules; the deeper check or the hub's start finds them.
STATIC = {  # found before anything restarts: the running hub is left alone
    "unknown scope": ('c.JupyterHub.load_roles.append({"name": "teachers", "scopes": ["admin:userz"], '
                      '"users": ["alice"]})', 1, "Scope 'admin:userz'"),
    "service without name": ('c.JupyterHub.services.append({"url": "http://127.0.0.1:9999"})', 1,
                             "an entry without a name"),
    "hub port in use": (f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{SQUATTED}'", 1,
                        f"the hub's port {SQUATTED} is already in use by python3"),
    "raises at import": ("import json\njson.loads('{oops')", 2, "JSONDecodeError"),
    "sys.exit()": ("import sys\nsys.exit()", 2, "SystemExit"),
    # upgrades back up and roll back the database barehub knows (--db-url's, or SQLite's in state/), not this one
    "database set in a fragment": ("c.JupyterHub.db_url = 'mysql+pymysql://hub@127.0.0.1/hub'", 1,
                                   "c.JupyterHub.db_url: the hub's database is set with --db-url"),
}
RUNTIME = {  # only the hub's start finds them: it falls back to the known-good fragments
    # (fragment, error shown, the slowest hub page meanwhile in s: README's bounds, "at most 20 s / 40 s")
    "database refuses its connect arguments": ('c.JupyterHub.db_kwargs = {"connect_args": {"timeout": "soon"}}',
                                               "must be real number, not str", 20),
    "admin role overridden": ('c.JupyterHub.load_roles = [{"name": "admin", "scopes": ["read:users"]}]',
                              "Cannot override admin role", 20),
    # it starts, but traefik's route to it leads nowhere (a Slurm site's hub_connect_url, mistyped); a page waits
    # for the 20 s barehub gives a new hub to become healthy, then for the known-good hub's start
    "hub unreachable through traefik": ("c.JupyterHub.hub_connect_url = 'http://127.0.0.1:9'",
                                        "did not become healthy", 40),
}


@pytest.fixture(scope="module")
def squatter(container):
    container.run(f"systemd-run --unit=test-squatter python3 -m http.server {SQUATTED} --bind 127.0.0.1")
    wait_until(lambda: status_code(f"http://127.0.0.1:{SQUATTED}/") == 200, 30)
    yield
    container.run("systemctl stop test-squatter", check=False)


def running_servers(container) -> list[str]:
    return json.loads(container.run("barehub status --json", check=False).stdout)["running_servers"]


@pytest.mark.parametrize("case", list(STATIC))
def test_fragment_the_deeper_check_refuses_leaves_the_hub_alone(container, hub, alice, server_headers, squatter,
                                                                case):
    text, line, error = STATIC[case]
    container.run(f"cat > {CONFIG_D}/50-bad.py", input=text + "\n")
    pid = container.main_pid(HUB)
    try:
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", server_headers) as servers, \
                RequestLoop(f"{BASE_URL}/hub/health") as pages:
            code, seconds, _ = reload(container)
        assert code != 0 and seconds < 30
        assert f"{CONFIG_D}/50-bad.py:{line}:" in hub_status(container) and error in hub_status(container)
        assert container.main_pid(HUB) == pid
        assert (servers.failed, pages.failed) == (0, 0), (servers.failures, pages.failures)
        shown = container.run("barehub status", check=False)  # says so after the journal has scrolled on
        assert shown.returncode != 0 and f"{CONFIG_D}/50-bad.py:{line}:" in shown.stdout, shown.stdout
    finally:
        container.run(f"rm -f {CONFIG_D}/50-bad.py")
    assert reload(container)[0] == 0  # fixed: applied, and status no longer names it
    assert "50-bad.py" not in container.run("barehub status").stdout


@pytest.mark.parametrize("case", list(RUNTIME))
def test_fragment_that_fails_at_start_brings_the_hub_back_on_the_known_good_config(container, hub, alice,
                                                                                  server_headers, case):
    text, error, slowest = RUNTIME[case]
    container.run(f"echo 'c.JupyterHub.template_vars = {{\"announcement_login\": \"known-good\"}}' "
                  f"> {CONFIG_D}/40-announce.py")
    assert reload(container)[0] == 0  # the known-good set now has 40-announce.py
    container.run(f"cat > {CONFIG_D}/50-bad.py", input=text + "\n")
    try:
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", server_headers) as servers, \
                RequestLoop(f"{BASE_URL}/hub/health") as pages:
            code, seconds, stderr = reload(container)
        MEASUREMENTS[f"bad reload ({case}): reload failed after (s)"] = round(seconds, 1)
        MEASUREMENTS[f"bad reload ({case}): /hub unavailable (s), slowest answer (s)"] = \
            f"{pages.longest_outage:.1f}, {pages.slowest:.1f}"
        assert code != 0 and seconds < 240
        status = hub_status(container)
        assert error in status and "known-good" in status, status
        assert "known-good" in requests.get(f"{BASE_URL}/hub/login", timeout=10).text  # its pages, back
        assert servers.failed == 0, servers.failures
        assert pages.slowest < slowest, pages.slowest
        if case == "hub unreachable through traefik":  # only failing health checks can tell; bounded
            assert pages.longest_outage < 60
        else:
            assert pages.failed == 0
        barehub_status = container.run("barehub status", check=False)
        assert barehub_status.returncode != 0 and "serves the known-good ones" in barehub_status.stdout
    finally:
        container.run(f"rm -f {CONFIG_D}/50-bad.py {CONFIG_D}/40-announce.py")
    code, seconds, stderr = reload(container)  # fixed: applied
    assert code == 0, stderr
    assert "known-good" not in requests.get(f"{BASE_URL}/hub/login", timeout=10).text
    assert "config: current" in container.run("barehub status").stdout


def test_a_restart_with_a_fragment_that_moves_the_database_comes_back_on_its_own_database(container, hub, alice,
                                                                                          server_headers):
    """`systemctl restart` runs no `barehub check`: the hub's start refuses a database no upgrade backs up itself,
    and comes back on the known-good fragments, with its users and their tokens."""
    elsewhere = f"{PREFIX}/state/elsewhere.sqlite"
    container.run(f"cat > {CONFIG_D}/50-bad.py", input=f"c.JupyterHub.db_url = 'sqlite:///{elsewhere}'\n")
    try:
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", server_headers) as servers, \
                RequestLoop(f"{BASE_URL}/hub/health") as pages:
            container.run(f"systemctl restart {HUB}", timeout=300)
            wait_until(lambda: "serves the known-good ones" in container.run("barehub status", check=False).stdout,
                       120)
        assert (servers.failed, pages.failed) == (0, 0), (servers.failures, pages.failures)
        assert f"{CONFIG_D}/50-bad.py:1: c.JupyterHub.db_url: the hub's database is set with --db-url" \
            in hub_status(container)
        r = alice.api("GET", "user", timeout=10)
        assert r.status_code == 200 and r.json()["name"] == USER  # the hub's own database
        assert container.run(f"test -e {elsewhere}", check=False).returncode != 0  # never opened
    finally:
        container.run(f"rm -f {CONFIG_D}/50-bad.py {elsewhere}")
    assert reload(container)[0] == 0


def test_a_good_reload_keeps_pid_and_servers_and_never_logs_failure(container, hub, alice, server_headers):
    container.run(f"echo 'c.Spawner.start_timeout = 120' > {CONFIG_D}/50-good.py")
    pid, since = container.main_pid(HUB), int(time.time()) - 1  # the container shares this clock
    try:
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", server_headers) as servers, \
                RequestLoop(f"{BASE_URL}/hub/health") as pages:
            code, seconds, stderr = reload(container)
        assert code == 0, stderr
        MEASUREMENTS["reload until the new hub answers through traefik (s)"] = round(seconds, 1)
        assert container.main_pid(HUB) == pid
        assert (servers.failed, pages.failed) == (0, 0), (servers.failures, pages.failures)
        journal = container.run(f"journalctl -u {HUB} --no-pager --since @{since}", check=False).stdout
        assert "Failed with result" not in journal
    finally:
        container.run(f"rm -f {CONFIG_D}/50-good.py")


def test_services_and_roles_as_the_docs_show_keep_the_culler_and_status(container, hub):
    container.run(f"cat > {CONFIG_D}/50-services.py", input=(
        'c.JupyterHub.services = [{"name": "announcer", "api_token": "a" * 40}]\n'
        'c.JupyterHub.load_roles = [{"name": "announcer", "scopes": ["read:users"], "services": ["announcer"]}]\n'
        "c.Barehub.idle_timeout = 15\n"
        "c.JupyterHub.allow_named_servers = True\n"))
    try:
        assert reload(container)[0] == 0
        bob = HubUser(hub, "bob", PASSWORDS["bob"])
        assert bob.login().status_code == 302
        bob.spawn()
        r = bob.api("POST", "users/bob/servers/second", json={})
        assert r.status_code in (201, 202), r.text
        wait_until(lambda: {"bob", "bob/second"} <= set(running_servers(container)), 60, interval=1)
        # barehub's own service kept its token and role; the culler stops every server of every user
        took = wait_until(lambda: not {"bob", "bob/second"} & set(running_servers(container)), 90, interval=1)
        MEASUREMENTS["idle servers (a default and a named one) culled after a services/roles fragment "
                     "(s, timeout 15)"] = round(took, 1)
        bob.api("DELETE", "users/bob/servers/second", json={"remove": True})
    finally:
        container.run(f"rm -f {CONFIG_D}/50-services.py")
        assert reload(container)[0] == 0


def test_conflicting_ports_are_refused_before_anything_changes(container, hub):
    before = container.run(f"cat {PREFIX}/proxy/traefik.toml").stdout
    for flags, message in (("--http-port 8081", "--http-port and --hub-port are both 8081"),
                           ("--http-port 8099", "--http-port and --proxy-api-port are both 8099")):
        proc = container.run(bootstrap_cmd().replace(f"--http-port {HTTP_PORT}", flags), check=False, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr
    assert container.run(f"cat {PREFIX}/proxy/traefik.toml").stdout == before


def test_two_bootstraps_at_once_the_second_is_refused_naming_the_first(container, hub):
    first = container.run(f"({bootstrap_cmd()} > /tmp/first.log 2>&1 & echo $!)").stdout.strip()
    wait_until(lambda: "[3/4]" in container.run("cat /tmp/first.log", check=False).stdout, 120)
    second = container.run(bootstrap_cmd(), check=False, timeout=300)
    assert second.returncode == 75
    assert f"another barehub run is changing {PREFIX}: pid {first}" in second.stderr
    wait_until(lambda: container.run(f"kill -0 {first}", check=False).returncode != 0, 300, interval=1)
    assert "error" not in container.run("cat /tmp/first.log").stdout


def test_a_refused_run_is_finished_by_the_next_one(container, hub):
    """A run refused on a broken fragment wrote traefik's new port but restarted nothing; the next run
    after the fix restarts traefik, which ends on the new port."""
    new_port = HTTP_PORT + 1
    container.run(f"echo 'c.Spawner.start_timeout = \"soon\"' > {CONFIG_D}/10-site.py")
    refused = container.run(bootstrap_cmd().replace(f"--http-port {HTTP_PORT}", f"--http-port {new_port}"),
                            check=False, timeout=900)
    try:
        assert refused.returncode == 1 and f"{CONFIG_D}/10-site.py:1:" in refused.stderr
        container.run(f"rm {CONFIG_D}/10-site.py")
        converged = container.run(bootstrap_cmd().replace(f" --http-port {HTTP_PORT}", ""), timeout=900)
        assert f"restarting {PROXY}" in converged.stdout
        assert status_code(f"http://127.0.0.1:{new_port}/hub/health") == 200
        assert status_code(f"{BASE_URL}/hub/health") is None
    finally:
        container.run(bootstrap_cmd(), timeout=900)  # back on HTTP_PORT
    assert status_code(f"{BASE_URL}/hub/health") == 200


def test_sub_path_behind_the_sites_nginx_with_tls(container, hub, tmp_path):
    """base_url in a fragment, traefik on loopback behind nginx (TLS at nginx), forwarded headers trusted
    from nginx's address only: install re-run, reload, spawn, code over the websocket, status, a converging
    `barehub upgrade`, the culler."""
    container.run(f"cat > {CONFIG_D}/20-subpath.py", input='c.JupyterHub.base_url = "/jupyter/"\n'
                                                        "c.Barehub.idle_timeout = 20\n")
    assert reload(container)[0] == 0
    rerun = container.run(bootstrap_cmd("--http-address", "127.0.0.1", "--trusted-proxy", "127.0.0.2/32"),
                          check=False, timeout=300)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    ca = pki.make_ca(container, "/etc/barehub-test", "nginx")
    cert, key = pki.issue(container, "/etc/barehub-test", "nginx", "nginx", ["localhost", "127.0.0.1"])
    container.run("cat > /etc/barehub-test/nginx.conf", input=NGINX.format(cert=cert, key=key, port=HTTP_PORT))
    container.run("mkdir -p /var/lib/nginx /var/log/nginx")  # the container's /var starts empty
    container.run("systemd-run --unit=test-nginx nginx -c /etc/barehub-test/nginx.conf -g 'daemon off;'")
    try:
        site = "https://127.0.0.1:28443"
        wait_until(lambda: status_code(f"{site}/jupyter/hub/health", verify=False) == 200, 30)
        local = tmp_path / "nginx-ca.pem"
        local.write_text(container.run(f"cat {ca}").stdout)
        user = HubUser(f"{site}/jupyter", "bob", PASSWORDS["bob"], verify=str(local))
        login = user.login()
        assert login.status_code == 302 and "Secure" in login.headers["Set-Cookie"]  # nginx said https
        user.spawn()
        assert user.execute("import getpass; print(getpass.getuser())").strip() == "bob"
        # straight to traefik, not through nginx: a login the hub accepts (its form's _xsrf), over plain HTTP
        # but claiming HTTPS
        direct = requests.Session()
        direct.get(f"{BASE_URL}/jupyter/hub/login", timeout=30).raise_for_status()
        forged = direct.post(f"{BASE_URL}/jupyter/hub/login?next=", allow_redirects=False, timeout=30,
                             headers={"X-Forwarded-Proto": "https"},
                             data={"username": "bob", "password": PASSWORDS["bob"], "_xsrf": direct.cookies["_xsrf"]})
        assert forged.status_code == 302 and "jupyterhub-hub-login" in forged.headers.get("Set-Cookie", "")
        assert "Secure" not in forged.headers["Set-Cookie"]  # from an untrusted address: overwritten
        listening = [line.split()[3] for line in container.run(f"ss -Hltn 'sport = :{HTTP_PORT}'").stdout.splitlines()]
        assert listening == [f"127.0.0.1:{HTTP_PORT}"]  # traefik on loopback only: nginx is the way in
        assert "bob" in running_servers(container)
        page = user.session.get(f"{site}/jupyter/hub/sessions", timeout=30, verify=str(local))
        assert page.status_code == 200 and 'href="/jupyter/hub/sessions"' in page.text  # the page, behind the sub-path
        cards = user.api("GET", "users/bob/sessions", timeout=30).json()["sessions"]
        assert [(c["name"], c["state"], c["url"]) for c in cards] == [("", "running", "/jupyter/user/bob/")]
        assert "base_url /jupyter/" in container.run("barehub status").stdout
        assert reload(container)[0] == 0
        assert status_code(f"{site}/jupyter/hub/health", verify=False) == 200
        upgrade = container.run(f"barehub upgrade {this_release()} --wheelhouse /mnt/wheelhouse", check=False,
                                timeout=900)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr  # it waited on /jupyter/hub/health
        wait_until(lambda: "bob" not in running_servers(container), 90, interval=1)  # the culler, via /jupyter/
    finally:
        container.run("systemctl stop test-nginx", check=False)
        container.run(f"rm -f {CONFIG_D}/20-subpath.py")
        assert reload(container)[0] == 0
        container.run(bootstrap_cmd("--http-address", "''", "--trusted-proxy", "''"), timeout=300)


NGINX = """
events {{}}
pid /run/test-nginx.pid;
error_log stderr;
http {{
    access_log off;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:28443 ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location /jupyter/ {{
            proxy_pass http://127.0.0.1:{port};
            proxy_bind 127.0.0.2;
            proxy_http_version 1.1;
            proxy_set_header Host $host:$server_port;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_buffering off;
        }}
    }}
}}
"""


def test_non_default_prefix_under_umask_027_the_cli_knows_its_install(container, hub):
    """Every command acts on the install it belongs to; uninstall refuses what is not an install."""
    container.run(f"barehub uninstall --prefix {PREFIX}")  # units go; /opt/barehub stays
    other = "/srv/hub"
    proc = container.run("umask 027 && " + bootstrap_cmd().replace("bootstrap.py", f"bootstrap.py --prefix {other}"),
                         check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    try:
        status = container.run("barehub status").stdout
        assert f"at {other}" in status
        container.run("barehub check")
        bob = HubUser(BASE_URL, "bob", PASSWORDS["bob"])
        assert bob.login().status_code == 302
        bob.spawn()  # bob's server runs the env that was built under umask 027
        upgrade = container.run(f"barehub upgrade {this_release()} --wheelhouse /mnt/wheelhouse", check=False,
                                timeout=900)
        assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
        assert container.run("test -e /opt/barehub/conda", check=False).returncode == 0  # untouched, not rebuilt
        refused = container.run("barehub uninstall --purge --prefix /opt", check=False)
        assert refused.returncode == 2 and "/opt is not a barehub install" in refused.stderr
        assert container.run("test -d /opt/barehub", check=False).returncode == 0
        container.run("barehub uninstall --purge")
        assert container.run(f"test -e {other}", check=False).returncode != 0
    finally:
        container.run(f"barehub uninstall --purge --prefix {other}", check=False)
        container.run(bootstrap_cmd(), timeout=900)  # the module's install back, with its secrets and database
    assert status_code(f"{BASE_URL}/hub/health") == 200
