"""The hub's database in Debian's real PostgreSQL (--db-url, --db-password-file), as a site runs it: a server of its
own in the container (a unit there), a password only in a file, a user's server, `barehub check`, the database
going away (the hub keeps serving, check, reload and install say why and change nothing), and the backup an upgrade
takes restored by `barehub rollback`.

The upgrade itself is not run here (a past release's wheelhouse takes minutes, tests/integration/test_upgrade.py
runs one on SQLite): the backup is taken by the function an upgrade takes it with (barehub.releases.backup, whose
PostgreSQL half is barehub.postgres.dump, after release_change's preflight) and put back by `barehub rollback`,
the command, which restores it as an automatic rollback does (barehub.releases.restore) and converges.

Its own install; the module ends by purging it and stopping the database.
"""
from __future__ import annotations

import pytest

from tests.integration.helpers import (BASE_URL, HUB, PASSWORD, PASSWORDS, PREFIX, USER, bootstrap_cmd, status_code,
                                       wait_until)
from testbed import postgres
from testbed.postgres import PASSWORD_FILE, URL as DB_URL, PASSWORD as DB_PASSWORD, psql
from tests.integration.hubclient import HubUser

PYTHON = f"{PREFIX}/conda/bin/python"


@pytest.fixture(scope="module")
def pg_install(container):
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    postgres.create(container)
    proc = container.run(bootstrap_cmd("--db-url", DB_URL, "--db-password-file", PASSWORD_FILE), check=False,
                         timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield HubUser.working(BASE_URL, USER, PASSWORD)
    container.run(f"barehub uninstall --prefix {PREFIX} --purge", check=False)
    postgres.stop(container)


def test_the_hub_keeps_its_users_in_postgresql_and_check_reaches_it(container, pg_install):
    assert psql(container, "select name from users").split() == [USER]
    assert "sqlite" not in container.run(f"ls {PREFIX}/state").stdout.replace("jupyterhub.sqlite", "")
    check = container.run("barehub check")
    assert f"database OK: {DB_URL} answers (PostgreSQL 15)" in check.stdout + check.stderr
    assert pg_install.api("GET", "user").json()["name"] == USER


def test_a_url_with_a_password_is_refused_naming_the_password_file_flag(container, pg_install):
    proc = container.run(f"barehub install --prefix {PREFIX} --db-url postgresql://jupyterhub:pw@127.0.0.1/jupyterhub",
                         check=False)
    assert proc.returncode == 2 and "--db-password-file PATH" in proc.stderr


def test_the_password_is_in_no_log_record_rendered_file_or_command_line(container, pg_install):
    where = {
        "journal": container.run("journalctl --no-pager -o cat").stdout,
        "processes": container.run("ps -eo args").stdout,
        "units": container.run("cat /etc/systemd/system/jupyterhub*.service").stdout,
        "install files": container.run(f"grep -rlF -e '{DB_PASSWORD}' {PREFIX} --exclude-dir=envs --exclude-dir=conda "
                                       f"|| true").stdout,
    }
    assert DB_URL in where["units"] + container.run(f"cat {PREFIX}/records/install.json").stdout
    assert {name: DB_PASSWORD in text for name, text in where.items()} == dict.fromkeys(where, False)


def test_an_unreachable_database_is_named_and_the_running_hub_keeps_serving(container, pg_install):
    pid = container.main_pid(HUB)
    postgres.stop(container)
    try:
        check = container.run("barehub check", check=False)
        assert check.returncode != 0
        assert f"cannot reach the hub's database {DB_URL} as root" in check.stderr
        assert "--db-url and --db-password-file" in check.stderr
        reload = container.run(f"systemctl reload {HUB}", check=False)
        assert reload.returncode != 0
        assert "cannot reach the hub's database" in container.run(f"journalctl -u {HUB} -n 30 -o cat").stdout
        install = container.run(f"barehub install --prefix {PREFIX}", check=False, timeout=300)
        assert install.returncode != 0 and "nothing was changed" in install.stderr
        assert container.main_pid(HUB) == pid  # neither restarted the hub
        assert status_code(f"{BASE_URL}/hub/health") == 200
        assert container.run(f"systemctl is-active jupyter-{USER}-singleuser").stdout.strip() == "active"
    finally:
        postgres.start(container)
    wait_until(lambda: pg_install.api("GET", "user").status_code == 200, 30)
    assert container.run("systemctl reload jupyterhub", check=False, timeout=240).returncode == 0


def test_the_upgrades_backup_of_the_database_is_restored_by_a_rollback(container, pg_install):
    backup = container.run(
        f"BAREHUB_PREFIX={PREFIX} {PYTHON} -c 'from barehub import release_change, releases; "
        f"from barehub.base.paths import Paths; p = Paths.from_prefix(\"{PREFIX}\"); "
        "release_change.check_backup_space(p, release_change.check_database_backup(p)); "
        "print(releases.backup(p, releases.read_release(p, p.release_file)).name)'").stdout.strip()
    dump = f"{PREFIX}/backups/{backup}/database.pgdump"
    assert container.run(f"stat -c '%a %U' {dump}").stdout.split() == ["600", "root"]
    tokens = set(psql(container, "select hashed from api_tokens").split())
    bob = HubUser(BASE_URL, "bob", PASSWORDS["bob"])
    assert bob.login().status_code == 302  # after the backup: bob and his session are new
    newer_tokens = set(psql(container, "select hashed from api_tokens").split()) - tokens
    psql(container, "set role jupyterhub; create table from_a_newer_release (x int)")  # as a newer release's
    # migration would add it, as the hub's role
    assert sorted(psql(container, "select name from users").split()) == sorted(["bob", USER])

    rollback = container.run(f"barehub rollback --backup {backup}", check=False, timeout=600)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert psql(container, "select name from users").split() == [USER]
    # every token of before is back and none made after the backup (the restarted hub may make its own anew)
    restored = set(psql(container, "select hashed from api_tokens").split())
    assert tokens <= restored and not newer_tokens & restored
    assert psql(container, "select tablename from pg_tables where tablename = 'from_a_newer_release'") == ""
    wait_until(lambda: pg_install.api("GET", "user").status_code == 200, 60)  # her token from before
