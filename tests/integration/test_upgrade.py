"""Upgrades between releases and back, with a real database migration.

Release N-1 is made the way a past release was: this repository's committed code with an older
release number that pins JupyterHub 5.4 (an older database schema), its own hash lock and its own
wheelhouse. It is installed with its own bootstrap.py, used, then upgraded to this release N and
rolled back, while requests to /hub and a user's server go on; the upgrade runs in its own unit, which outlives its
client, and one killed midway is named by `barehub status` with the command that ends it. Runs last: it starts
from a fresh install.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.integration.helpers import (BASE_URL, HTTP_PORT, HUB, MEASUREMENTS, PASSWORDS, PREFIX, SYSTEM_PYTHON,
                                       RequestLoop, add_local_user, place_release, status_code, this_release,
                                       wait_until)
from tests.integration.hubclient import HubUser

OLD = "2026.10.0"  # the new release is this checkout's VERSION
OLD_HUB = "5.4.6"
USER, PASSWORD = "grace", PASSWORDS["grace"]
UPGRADE_UNIT = "barehub-upgrade-opt-barehub.service"  # PREFIX's (Paths.upgrade_unit)
HUB_PAGE_WAIT = 60  # s a /hub request may wait in traefik's retries (~45 s) before it counts as failed, as a browser


@pytest.fixture(scope="module")
def old_release(container, tmp_path_factory) -> Path:
    """Release N-1's tree (as a checkout of it), its lock and wheelhouse, placed inside the container at /opt/n-1."""
    return place_release(container, tmp_path_factory.mktemp("n-1"), "HEAD",
                         {"bootstrap.py": (f'VERSION = "{this_release()}"', f'VERSION = "{OLD}"'),
                          "pyproject.toml": ('"jupyterhub==6.1.1"', f'"jupyterhub=={OLD_HUB}"')}, "n-1")


def status(box) -> dict:
    return json.loads(box.run(f"barehub status --json --prefix {PREFIX}", check=False).stdout)


@pytest.fixture(scope="module")
def installed_old(container, old_release) -> HubUser:
    """The old release installed, its user's server running; returns her, with a token made on that release."""
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    add_local_user(container, USER)
    container.run(f"{SYSTEM_PYTHON} {old_release}/bootstrap.py --wheelhouse {old_release}/wheelhouse "
                  f"--http-port {HTTP_PORT}", timeout=900)
    assert status(container)["versions"]["jupyterhub"] == OLD_HUB
    user = HubUser(BASE_URL, USER, PASSWORD)
    assert user.login().status_code == 302
    user.spawn()
    user.auth()
    return user


def token_works(user: HubUser) -> bool:
    r = user.api("GET", "user", timeout=10)
    return r.status_code == 200 and r.json()["name"] == USER


def server_answers(user: HubUser) -> bool:
    return status_code(f"{BASE_URL}/user/{USER}/api/status", headers=user.auth()) == 200


def test_an_upgrade_that_cannot_get_its_packages_leaves_the_running_hub_alone(container, installed_old):
    pid = container.main_pid(HUB)
    r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --index-url http://127.0.0.1:9/simple",
                      check=False, timeout=600)
    assert r.returncode == 1
    assert "the package index is unreachable" in r.stderr
    assert f"runs in its own unit, {UPGRADE_UNIT}: it goes on if this session ends" in r.stdout
    assert container.main_pid(HUB) == pid and token_works(installed_old)
    assert status(container)["release"] == OLD
    assert container.run(f"ls {PREFIX}/backups", check=False).stdout.strip() == ""  # nothing was started


FRAGMENT = f"{PREFIX}/jupyterhub_config.d/50-site.py"
# Failures injected at each step of an upgrade; each fragment is harmless to release N-1 itself.
INJECTED = {
    "the new release refuses a fragment": (
        f'import barehub\nassert barehub.__version__ == "{OLD}", "written for {OLD} only"\n',
        "refuses this install's config, so nothing was changed"),
    # an upgrade would migrate that database without a backup, and a rollback would bring the old hub back onto
    # the migrated schema: the new release's check refuses it before anything changes
    "a fragment moves the hub's database": (
        "c.JupyterHub.db_url = 'sqlite:////var/lib/elsewhere/jupyterhub.sqlite'\n",
        "50-site.py:1: c.JupyterHub.db_url: the hub's database is set with --db-url"),
    "the database migration fails": (
        'import sys\nassert "upgrade-db" not in sys.argv, "no database migration today"\n',
        "the database migration to"),
    "the new hub does not become healthy": (
        f'import barehub\nif barehub.__version__ != "{OLD}":\n'
        "    c.JupyterHub.hub_connect_url = 'http://127.0.0.1:9'  # traefik's route to the hub leads nowhere\n",
        "did not become healthy"),
    # passes the new release's check, fails only at its hub's start; the old hub is reloaded with it first, so the
    # new hub's known-good fragments hold it too: it has nothing to fall back to and crash-loops (systemd restarts
    # it) until the upgrade gives up and rolls back. Last: the known-good fragments keep it afterwards
    "the new hub fails to start": (
        f'import barehub\nif barehub.__version__ != "{OLD}":\n'
        '    c.JupyterHub.load_roles = [{"name": "admin", "scopes": ["read:users"]}]\n',
        "the hub does not start"),
}


REFUSED = ("the new release refuses a fragment", "a fragment moves the hub's database")


@pytest.mark.parametrize("case", list(INJECTED))
def test_a_failed_upgrade_leaves_or_brings_back_the_old_release_with_its_data(container, installed_old, case):
    text, error = INJECTED[case]
    backups_before = container.run(f"ls {PREFIX}/backups", check=False).stdout.split()
    container.run(f"cat > {FRAGMENT}", input=text)
    try:
        if case == "the new hub fails to start":
            container.run(f"systemctl reload {HUB}", timeout=300)
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", installed_old.auth()) as server, \
                RequestLoop(f"{BASE_URL}/hub/health", timeout=HUB_PAGE_WAIT) as pages:
            start = time.monotonic()
            r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse",
                              check=False, timeout=900)
            took = time.monotonic() - start
        assert r.returncode == 1, r.stdout + r.stderr
        assert error in r.stdout + r.stderr, r.stdout + r.stderr
        now = status(container)
        assert now["release"] == OLD and now["versions"]["jupyterhub"] == OLD_HUB
        assert container.run(f"readlink {PREFIX}/conda").stdout.strip() == f"envs/{OLD}"
        assert container.run(f"test -e {PREFIX}/records/upgrade.json", check=False).returncode != 0, r.stdout + r.stderr
        wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 60)
        assert token_works(installed_old)  # the database is the pre-upgrade one
        assert server.failed == 0 and server.ok > 5, server.failures  # the user's server answered throughout
        if case != "the new hub does not become healthy":  # that one cannot answer: its route leads nowhere
            MEASUREMENTS[f"upgrade failed ({case}): failed /hub requests, slowest /hub answer (s)"] = \
                f"{pages.failed}, {pages.slowest:.1f}"
            assert pages.failed == 0, pages.failures  # /hub waited in traefik's retries, through the rollback
        backups = container.run(f"ls {PREFIX}/backups", check=False).stdout.split()
        if case in REFUSED:
            assert backups == backups_before  # refused before anything changed
            MEASUREMENTS[f"upgrade refused by the new release's check ({case}) (s)"] = round(took, 1)
        else:
            assert "rolled back: release" in r.stderr and len(backups) == len(backups_before) + 1
            MEASUREMENTS[f"upgrade failed ({case}) -> old release serving again (s)"] = round(took, 1)
    finally:
        container.run(f"rm -f {FRAGMENT}")


def unit_state(container) -> str:
    return container.run(f"systemctl is-active {UPGRADE_UNIT}", check=False).stdout.strip()


def test_an_upgrade_killed_midway_is_named_by_status_with_the_one_command_that_ends_it(container, installed_old):
    """The upgrade's own unit killed -9 once the old hub has stopped (a crash, an OOM kill): nothing finishes it.
    `barehub status` says so, and the command it names brings the old release back with its database."""
    container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse "
                  "> /tmp/interrupted.log 2>&1 &")
    wait_until(lambda: unit_state(container) == "active", 60)
    wait_until(lambda: container.run(f"systemctl is-active {HUB}", check=False).stdout.strip() != "active", 300)
    container.run(f"systemctl kill --signal=SIGKILL {UPGRADE_UNIT}")
    wait_until(lambda: unit_state(container) not in ("active", "deactivating"), 60)
    shown = container.run(f"barehub status --prefix {PREFIX}", check=False)
    assert shown.returncode != 0, shown.stdout
    assert f"PROBLEM: the upgrade {OLD} -> {this_release()} was interrupted, its backup " in shown.stdout, shown.stdout
    end = [line.split("end it: ", 1)[1] for line in shown.stdout.splitlines() if "end it: " in line]
    assert end and end[0].startswith("barehub rollback --backup "), shown.stdout
    container.run(f"{end[0]} --prefix {PREFIX}", timeout=600)
    after = container.run(f"barehub status --prefix {PREFIX}", check=False)
    assert after.returncode == 0 and "interrupted" not in after.stdout, after.stdout
    assert status(container)["release"] == OLD and token_works(installed_old)
    wait_until(lambda: server_answers(installed_old), 60)


def test_upgrade_keeps_users_tokens_and_running_servers_and_outlives_its_client(container, installed_old):
    """A good upgrade: no failed request to /hub or the user's server throughout. Its client is killed midway (a
    dropped SSH session: SIGHUP, then SIGKILL): the upgrade goes on in its unit and finishes; a second one meanwhile
    is refused."""
    start, since = time.monotonic(), int(time.time()) - 1  # the container shares this clock
    with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", installed_old.auth()) as server, \
            RequestLoop(f"{BASE_URL}/hub/health", timeout=HUB_PAGE_WAIT) as pages:
        client = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse "
                               "> /tmp/upgrade.log 2>&1 & echo $!").stdout.strip()
        wait_until(lambda: "backed up" in container.run("cat /tmp/upgrade.log").stdout, 300)
        second = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX}", check=False, timeout=300)
        container.run(f"kill -HUP {client}; sleep 0.5; kill -KILL {client}", check=False)
        wait_until(lambda: unit_state(container) not in ("active", "deactivating"), 600, interval=1)
    MEASUREMENTS[f"upgrade {OLD} (JupyterHub {OLD_HUB}) -> {this_release()} incl. DB migration (s)"] = \
        round(time.monotonic() - start, 1)
    MEASUREMENTS["good upgrade: failed /hub requests, slowest /hub answer (s)"] = f"{pages.failed}, {pages.slowest:.1f}"
    assert second.returncode == 75 and f"is already running (unit {UPGRADE_UNIT})" in second.stderr, second.stderr
    assert (server.failed, pages.failed) == (0, 0), (server.failures, pages.failures)
    assert container.run(f"kill -0 {client}", check=False).returncode != 0  # the client is gone
    log = container.run(f"journalctl --no-pager -o cat --since @{since} _SYSTEMD_UNIT={UPGRADE_UNIT}").stdout
    assert f"release {OLD} -> {this_release()}: backed up" in log
    assert "database migrated" in log and "the hub answers through the proxy" in log, log[-3000:]
    now = status(container)
    assert now["release"] == this_release() and now["versions"]["jupyterhub"] == "6.1.1" and now["upgrade"] is None
    assert token_works(installed_old)
    wait_until(lambda: server_answers(installed_old), 60)  # started by N-1, still running, found again
    backup = container.run(f"ls {PREFIX}/backups").stdout.split()[-1]  # this upgrade's, after the failed ones'
    assert backup.endswith(f"-from-{OLD}")
    assert container.run(f"test -e {PREFIX}/records/upgrade.json", check=False).returncode != 0
    assert container.run(f"stat -c %a {PREFIX}/backups/{backup}/jupyterhub.sqlite").stdout.strip() == "600"
    # the previous release's env stays, for servers started from it and for a rollback
    assert container.run(f"test -x {PREFIX}/envs/{OLD}/bin/python", check=False).returncode == 0


def test_rollback_brings_the_previous_release_back_with_its_data(container, installed_old):
    container.run(f"barehub rollback --prefix {PREFIX}", timeout=600)
    now = status(container)
    assert now["release"] == OLD and now["versions"]["jupyterhub"] == OLD_HUB
    assert container.run(f"readlink {PREFIX}/conda").stdout.strip() == f"envs/{OLD}"
    wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 60)
    assert token_works(installed_old)
    wait_until(lambda: server_answers(installed_old), 60)
