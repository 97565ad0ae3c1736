"""The upgrade from the last release whose user servers were the hub's children (LocalProcessSpawner,
KillMode=process) to this one, whose servers are systemd units: what README's "Upgrading from a release
whose servers were the hub's children" says happens.

That release is this repository's tree at LAST_CHILD_SERVERS, given an older release number. Runs after
test_upgrade.py: it starts from a fresh install.
"""
from __future__ import annotations

import json
import subprocess
import time

import pytest
import requests

from tests.integration.helpers import (HTTP_PORT, HUB, MEASUREMENTS, PREFIX, REPO, SYSTEM_PYTHON, place_release,
                                       status_code, this_release, wait_until)
from tests.integration.hubclient import HubUser

LAST_CHILD_SERVERS = "0236d84"  # the last commit before jupyterhub-systemdspawner
OLD = "2026.10.1"
USER, PASSWORD = "heidi", "heidi-Secret-6"
BASE = f"http://127.0.0.1:{HTTP_PORT}"


@pytest.fixture(scope="module")
def child_servers_release(container, tmp_path_factory):
    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{LAST_CHILD_SERVERS}^{{commit}}"]).returncode:
        pytest.skip(f"this clone does not have commit {LAST_CHILD_SERVERS} (a shallow clone)")
    return place_release(container, tmp_path_factory.mktemp("children"), LAST_CHILD_SERVERS,
                         {"bootstrap.py": ('VERSION = "2026.11.0"', f'VERSION = "{OLD}"')}, "children")


def singleuser_processes(container) -> list[str]:
    out = container.run("ps -eo pid=,user:20=,args=", check=False).stdout
    return [line.split()[1] for line in out.splitlines() if "jupyterhub-singleuser" in line]


def has_server(token: str) -> bool:
    r = requests.get(f"{BASE}/hub/api/users/{USER}", headers={"Authorization": f"token {token}"}, timeout=10)
    r.raise_for_status()
    return bool(r.json()["server"])


def test_servers_started_as_the_hubs_children_are_stopped_by_the_upgrade_start_again_as_units_and_back(
        container, child_servers_release):
    old = child_servers_release
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    container.run(f"id {USER} || (useradd --create-home {USER} && echo '{USER}:{PASSWORD}' | chpasswd)")
    container.run(f"{SYSTEM_PYTHON} {old}/bootstrap.py --env-backend pip --wheelhouse {old}/wheelhouse "
                  f"--http-port {HTTP_PORT}", timeout=900)
    user = HubUser(BASE, USER, PASSWORD)
    assert user.login().status_code == 302
    user.spawn()
    token = user.token()
    # the old release's server: a child of the hub, in the hub's cgroup, no unit of its own
    assert singleuser_processes(container) == [USER]
    assert container.run(f"systemctl is-active jupyter-{USER}-singleuser", check=False).returncode != 0

    start = time.monotonic()
    r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse",
                      timeout=900)
    MEASUREMENTS["upgrade from a release with child servers (s)"] = round(time.monotonic() - start, 1)
    assert f"release {OLD} -> {this_release()}" in r.stdout

    # as README says: the upgrade stopped it, the new hub shows it stopped, nothing is left over
    wait_until(lambda: not has_server(token), 60, interval=1)
    assert singleuser_processes(container) == []
    assert "left-over process" not in container.run(f"journalctl -u {HUB} --no-pager -o cat").stdout
    # the user starts again and gets a server unit
    user.spawn()
    assert container.run(f"systemctl is-active jupyter-{USER}-singleuser").stdout.strip() == "active"
    assert user.execute("import getpass; print(getpass.getuser())").strip() == USER

    # and back: that release's hub cannot see server units, so the rollback stops them first
    r = container.run(f"barehub rollback --prefix {PREFIX}", timeout=600)
    assert f"release {OLD} cannot see user servers as units: stopping them" in r.stderr + r.stdout
    assert container.run(f"systemctl is-active jupyter-{USER}-singleuser", check=False).returncode != 0
    assert singleuser_processes(container) == []
    wait_until(lambda: status_code(f"{BASE}/hub/health") == 200, 60)
    assert json.loads(container.run(f"barehub status --json --prefix {PREFIX}", check=False).stdout)["release"] == OLD
    user.spawn()  # a child of the old hub again
    assert singleuser_processes(container) == [USER]
    container.run(f"barehub uninstall --prefix {PREFIX} --purge")
