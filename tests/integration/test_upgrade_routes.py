"""The upgrade from the last release that kept the hub's routes in one rules.toml (routes and the hub's
bookkeeping together, written with toml) to this one (rules.yaml for traefik, the bookkeeping in state/),
and the rollback to it: a running user server answers throughout, and neither hub loses a route.

That release is this repository's tree at LAST_TOML_ROUTES, given an older release number. Runs after
test_upgrade_from_child_servers.py: it starts from a fresh install.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.integration.helpers import (BASE_URL, HUB, MEASUREMENTS, PREFIX, RequestLoop,
                                       install_past_release_with_a_server, place_past_commit, status_code, this_release,
                                       wait_until)

LAST_TOML_ROUTES = "544d823"  # the last commit before barehub.route_table
OLD = "2026.10.2"
USER = "ivan"
DYNAMIC = f"{PREFIX}/proxy/dynamic"


@pytest.fixture(scope="module")
def toml_routes_release(container, tmp_path_factory):
    return place_past_commit(container, tmp_path_factory.mktemp("toml-routes"), LAST_TOML_ROUTES, OLD, "toml-routes")


def journal_since(container, cursor: str) -> str:
    return container.run(f"journalctl -u {HUB} --no-pager -o cat --after-cursor='{cursor}'", check=False).stdout


def cursor(container) -> str:
    return container.run("journalctl -n 0 --show-cursor --no-pager", check=False).stdout.split("cursor: ")[-1].strip()


def test_routes_move_to_the_new_files_and_back_while_the_users_server_answers(container, toml_routes_release):
    user = install_past_release_with_a_server(container, toml_routes_release, USER)
    assert f"/user/{USER}/" in container.run(f"cat {DYNAMIC}/rules.toml").stdout  # the old release's file
    server = f"{BASE_URL}/user/{USER}/api/status"

    mark = cursor(container)
    with RequestLoop(server, user.auth()) as during_upgrade:
        start = time.monotonic()
        r = container.run(f"barehub upgrade {this_release()} --prefix {PREFIX} --wheelhouse /mnt/wheelhouse",
                          timeout=900)
        MEASUREMENTS["upgrade from a release with rules.toml (s)"] = round(time.monotonic() - start, 1)
    assert f"release {OLD} -> {this_release()}" in r.stdout
    assert during_upgrade.failed == 0 and during_upgrade.ok > 5, during_upgrade.failures
    assert container.run(f"ls -A {DYNAMIC}").stdout.split() == ["barehub.toml", "routes", "tls.toml"]
    assert container.run(f"ls -A {DYNAMIC}/routes").stdout.split() == ["rules.yaml"]
    routes = json.loads(container.run(f"cat {PREFIX}/state/proxy_routes.json").stdout)["routes"]
    assert [r["routespec"] for r in routes.values() if r["data"].get("user") == USER] == [f"/user/{USER}/"]
    journal = journal_since(container, mark)
    assert "Taking" in journal and "routes over from" in journal
    assert "Adding missing route" not in journal  # the new hub found the old one's routes

    mark = cursor(container)
    with RequestLoop(server, user.auth()) as during_rollback:
        container.run(f"barehub rollback --prefix {PREFIX}", timeout=600)
    assert during_rollback.failed == 0 and during_rollback.ok > 5, during_rollback.failures
    wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 60)
    assert json.loads(container.run(f"barehub status --json --prefix {PREFIX}", check=False).stdout)["release"] == OLD
    assert "rules.yaml" not in container.run(f"ls -A {DYNAMIC}").stdout
    assert "routes" not in container.run(f"ls -A {DYNAMIC}").stdout.split()  # its stale rules would come first
    assert f"/user/{USER}/" in container.run(f"cat {DYNAMIC}/rules.toml").stdout
    assert container.run(f"test -e {PREFIX}/state/proxy_routes.json", check=False).returncode != 0
    assert "Adding missing route" not in journal_since(container, mark)  # the old hub found them too
    assert user.execute("import getpass; print(getpass.getuser())").strip() == USER
    container.run(f"barehub uninstall --prefix {PREFIX} --purge")
