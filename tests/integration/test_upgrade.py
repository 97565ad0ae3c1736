"""Upgrades between releases and back, with a real database migration.

Release N-1 is made the way a past release was: this repository's committed code with an older
release number that pins JupyterHub 5.4 (an older database schema), its own hash lock and its own
wheelhouse. It is installed with its own bootstrap.py, used, then upgraded to this release N and
rolled back. Runs last: it starts from a fresh install.
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
    assert container.main_pid(HUB) == pid and token_works(installed_old)
    assert status(container)["release"] == OLD
    assert container.run(f"ls {PREFIX}/backups", check=False).stdout.strip() == ""  # nothing was started


FRAGMENT = f"{PREFIX}/jupyterhub_config.d/50-site.py"
# Failures injected at each step of an upgrade; each fragment is harmless to release N-1 itself.
INJECTED = {
    "the new release refuses a fragment": (
        f'import barehub\nassert barehub.__version__ == "{OLD}", "written for {OLD} only"\n',
        "refuses this install's config, so nothing was changed"),
    "the database migration fails": (
        'import sys\nassert "upgrade-db" not in sys.argv, "no database migration today"\n',
        "the database migration to"),
    "the new hub does not become healthy": (
        f'import barehub\nif barehub.__version__ != "{OLD}":\n'
        "    c.JupyterHub.hub_connect_url = 'http://127.0.0.1:9'  # traefik's route to the hub leads nowhere\n",
        "did not become healthy"),
}


@pytest.mark.parametrize("case", list(INJECTED))
def test_a_failed_upgrade_leaves_or_brings_back_the_old_release_with_its_data(container, installed_old, case):
    text, error = INJECTED[case]
    backups_before = container.run(f"ls {PREFIX}/backups", check=False).stdout.split()
    container.run(f"cat > {FRAGMENT}", input=text)
    try:
        with RequestLoop(f"{BASE_URL}/user/{USER}/api/status", installed_old.auth()) as server:
            start = time.monotonic()
            r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse",
                              check=False, timeout=900)
            took = time.monotonic() - start
        assert r.returncode == 1, r.stdout + r.stderr
        assert error in r.stderr, r.stderr
        now = status(container)
        assert now["release"] == OLD and now["versions"]["jupyterhub"] == OLD_HUB
        assert container.run(f"readlink {PREFIX}/conda").stdout.strip() == f"envs/{OLD}"
        assert container.run(f"test -e {PREFIX}/records/upgrade.json", check=False).returncode != 0
        wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 60)
        assert token_works(installed_old)  # the database is the pre-upgrade one
        assert server.failed == 0 and server.ok > 5  # the user's server answered throughout
        backups = container.run(f"ls {PREFIX}/backups", check=False).stdout.split()
        if case == "the new release refuses a fragment":
            assert backups == backups_before  # refused before anything changed
            MEASUREMENTS["upgrade refused by the new release's check (s)"] = round(took, 1)
        else:
            assert "rolled back: release" in r.stderr and len(backups) == len(backups_before) + 1
            MEASUREMENTS[f"upgrade failed ({case}) -> old release serving again (s)"] = round(took, 1)
    finally:
        container.run(f"rm -f {FRAGMENT}")


def test_upgrade_keeps_users_tokens_and_running_servers(container, installed_old):
    start = time.monotonic()
    r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse", timeout=900)
    MEASUREMENTS[f"upgrade {OLD} (JupyterHub {OLD_HUB}) -> {this_release()} incl. DB migration (s)"] = \
        round(time.monotonic() - start, 1)
    assert f"release {OLD} -> {this_release()}: backed up" in r.stdout
    assert "database migrated" in r.stdout
    now = status(container)
    assert now["release"] == this_release() and now["versions"]["jupyterhub"] == "6.1.1"
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
