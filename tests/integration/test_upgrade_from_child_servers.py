"""The upgrade from the last release whose user servers were the hub's children (LocalProcessSpawner,
KillMode=process) to this one, whose servers are systemd units: what docs/upgrades.md's "Upgrading from a
release whose servers were the hub's children" says happens.

That release is this repository's tree at LAST_CHILD_SERVERS, given an older release number. Runs after
test_upgrade.py: it starts from a fresh install.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.helpers import (BASE_URL, HUB, MEASUREMENTS, PREFIX, install_past_release_with_a_server,
                                       place_past_commit, status_code, this_release, wait_until)
from tests.integration.hubclient import HubUser

LAST_CHILD_SERVERS = "0236d84"  # the last commit before jupyterhub-systemdspawner
OLD = "2026.10.1"
USER = "heidi"


@pytest.fixture(scope="module")
def child_servers_release(container, tmp_path_factory):
    return place_past_commit(container, tmp_path_factory.mktemp("children"), LAST_CHILD_SERVERS, OLD, "children")


def singleuser_processes(container) -> list[str]:
    out = container.run("ps -eo pid=,user:20=,args=", check=False).stdout
    return [line.split()[1] for line in out.splitlines() if "jupyterhub-singleuser" in line]


def has_server(user: HubUser) -> bool:
    r = user.api("GET", f"users/{USER}", timeout=10)
    r.raise_for_status()
    return bool(r.json()["server"])


def test_servers_started_as_the_hubs_children_are_stopped_by_the_upgrade_start_again_as_units_and_back(
        container, child_servers_release):
    user = install_past_release_with_a_server(container, child_servers_release, USER)
    user.auth()  # her token, made on the old release
    # the old release's server: a child of the hub, in the hub's cgroup, no unit of its own
    assert singleuser_processes(container) == [USER]
    assert container.run(f"systemctl is-active jupyter-{USER}-singleuser", check=False).returncode != 0

    start = time.monotonic()
    r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse",
                      timeout=900)
    MEASUREMENTS["upgrade from a release with child servers (s)"] = round(time.monotonic() - start, 1)
    assert f"release {OLD} -> {this_release()}" in r.stdout

    # as docs/upgrades.md says: the upgrade stopped it, the new hub shows it stopped, nothing is left over
    wait_until(lambda: not has_server(user), 60, interval=1)
    leftover = singleuser_processes(container)
    assert leftover == [], (leftover, container.run(
        "for p in $(pgrep -f jupyterhub-singleuser); do ps -o pid=,stat=,etimes=,args= -p $p; cat /proc/$p/cgroup; done;"
        " journalctl --no-pager -o short-monotonic -u 'barehub-upgrade-*' -u jupyterhub | tail -80", check=False).stdout)
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
    wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 60)
    assert json.loads(container.run(f"barehub status --json --prefix {PREFIX}", check=False).stdout)["release"] == OLD
    user.spawn()  # a child of the old hub again
    assert singleuser_processes(container) == [USER]
    container.run(f"barehub uninstall --prefix {PREFIX} --purge")
