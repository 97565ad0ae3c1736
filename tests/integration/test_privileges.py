"""Root never trusts what the hub user can write: a `--hub-user` install attacked by its own hub user.

The hub user owns state/ (and writes routes into proxy/dynamic/). As that user the tests plant links to
files outside the prefix, records that would make the next root run install a root hub, and a module in
the hub's working directory; then root runs bootstrap.py, the hub restarts, root runs `barehub rollback`.
Nothing outside the prefix may change, the units keep the hub user, no planted code runs.

Its own install (with --hub-user and the site's own certificate); the module ends by purging it.
"""
from __future__ import annotations

import json
import shlex
import time

import pytest

from tests.integration import pki
from tests.integration.helpers import HUB, PREFIX, bootstrap_cmd, status_code, wait_until

HUB_USER = "jhub"
STATE = f"{PREFIX}/state"
TLS_TOML = f"{PREFIX}/proxy/dynamic/tls.toml"
HTTPS_PORT = 28443
VICTIMS = ("/etc/shadow", "/etc/sudoers")  # what a planted link would make root chown, read or send


@pytest.fixture(scope="module")
def install(container):
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    container.run(f"id {HUB_USER} || useradd --system --create-home --home-dir /var/lib/{HUB_USER} {HUB_USER}")
    pki.make_ca(container, "/etc/barehub-test/priv", "site")
    cert, key = pki.issue(container, "/etc/barehub-test/priv", "site", "hub", ["localhost", "127.0.0.1"])
    proc = container.run(bootstrap_cmd("--hub-user", HUB_USER, "--tls-cert", cert, "--tls-key", key,
                                       "--https-port", str(HTTPS_PORT)), check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield
    container.run(f"barehub uninstall --prefix {PREFIX} --purge", check=False)


def as_hub_user(container, command: str):
    return container.run(f"runuser -u {HUB_USER} -- sh -c {shlex.quote(command)}", check=False)


def fingerprints(container) -> str:
    """Owner, mode and content of the files outside the prefix that a planted link aims at."""
    return container.run(" ; ".join(f"stat -c '%U:%G %a %i %Z' {v} && sha256sum {v}" for v in VICTIMS)).stdout


def hub_is_healthy() -> bool:
    return status_code(f"https://127.0.0.1:{HTTPS_PORT}/hub/health", verify=False) == 200


@pytest.mark.parametrize("name, victim", [("jupyterhub.sqlite", "/etc/shadow"),
                                          ("jupyterhub_cookie_secret", "/etc/shadow"),
                                          ("barehub_api_token", "/etc/sudoers")])
def test_a_link_planted_in_state_is_refused_by_root_and_nothing_outside_changes(container, install, name, victim):
    before = fingerprints(container)
    path = f"{STATE}/{name}"
    assert as_hub_user(container, f"mv {path} {path}.real && ln -s {victim} {path}").returncode == 0
    try:
        run = container.run(bootstrap_cmd(), check=False, timeout=900)
        assert run.returncode == 1
        assert f"{path} is a symbolic link" in run.stderr, run.stderr
        assert hub_is_healthy()  # refused before anything restarted
        if name == "barehub_api_token":  # `barehub status` would have read it and sent it to the hub as a token
            status = container.run("barehub status", check=False)
            assert f"running servers: unknown (no service token: {path} is a symbolic link" in status.stdout
        assert fingerprints(container) == before
    finally:
        as_hub_user(container, f"rm -f {path} && mv {path}.real {path}")
    assert container.run(bootstrap_cmd(), check=False, timeout=900).returncode == 0
    assert fingerprints(container) == before


def test_tls_toml_with_the_key_is_never_the_hub_users_not_even_during_a_run(container, install):
    before = container.run(f"stat -c '%i %Z %U:%G %a' {TLS_TOML}").stdout
    assert before.split()[2:] == ["root:barehub-proxy", "640"]
    container.run(bootstrap_cmd(), timeout=900)  # a converging run: nothing to change, nothing chowned
    assert container.run(f"stat -c '%i %Z %U:%G %a' {TLS_TOML}").stdout == before  # same inode, same ctime
    assert as_hub_user(container, f"cat {TLS_TOML}").returncode != 0
    assert as_hub_user(container, f"ln {TLS_TOML} /var/lib/{HUB_USER}/key").returncode != 0
    assert hub_is_healthy()


def test_no_root_file_lies_in_a_directory_the_hub_user_owns_and_she_cannot_rename_roots(container, install):
    """Reproduced before: proxy/dynamic/ was hers; she renamed tls.toml (the site's key, inline) and the next
    run chowned it to her. Now root's files are in root's directories, whatever their names."""
    hers = container.run(f"find {PREFIX} -xdev -type d -user {HUB_USER}").stdout.split()
    assert f"{PREFIX}/state" in hers and f"{PREFIX}/proxy/dynamic/routes" in hers
    for directory in hers:
        assert container.run(f"find {directory} -maxdepth 1 -mindepth 1 -user root").stdout == "", directory
    assert as_hub_user(container, f"mv {TLS_TOML} {PREFIX}/proxy/dynamic/routes/key.toml").returncode != 0
    assert as_hub_user(container, f"touch {PREFIX}/proxy/dynamic/more.toml").returncode != 0
    before = container.run(f"stat -c '%i %U:%G %a' {TLS_TOML}").stdout
    container.run(bootstrap_cmd(), timeout=900)
    assert container.run(f"stat -c '%i %U:%G %a' {TLS_TOML}").stdout == before
    assert hub_is_healthy()  # the hub's own route went through routes/ and traefik noticed it


def test_a_fifo_as_the_run_record_hangs_neither_status_nor_a_reload(container, install):
    record = f"{STATE}/hub-run.json"
    assert as_hub_user(container, f"rm -f {record} && mkfifo {record}").returncode == 0
    try:
        start = time.monotonic()
        status = container.run("timeout 60 barehub status", check=False)
        assert status.returncode in (0, 3) and time.monotonic() - start < 30, (status.returncode, status.stderr)
        assert "not a regular file" in status.stdout + status.stderr
        reload = container.run(f"timeout 120 systemctl reload {HUB}", check=False)
        assert reload.returncode == 0, container.run(f"journalctl -u {HUB} -n 30 --no-pager").stdout
        assert container.run(f"stat -c %F {record}").stdout.strip() == "regular file"  # the hub's own again
    finally:
        container.run(f"test -p {record} && rm -f {record}", check=False)
    assert hub_is_healthy()


def test_what_the_hub_user_writes_reaches_roots_terminal_without_control_characters(container, install):
    record = f"{STATE}/hub-run.json"
    planted = {"pid": 1, "started": time.time(), "config": "known-good", "digest": "",
               "base_url": "/\u001b]0;owned\u0007/", "failed": {"error": "\u001b[2J\u001b[Hall is well\r"}}
    as_hub_user(container, f"cp {record} {record}.real")
    container.run(f"runuser -u {HUB_USER} -- tee {record} >/dev/null", input=json.dumps(planted))
    try:
        out = container.run("barehub status", check=False)
        assert "\x1b" not in out.stdout + out.stderr and "\r" not in out.stdout
        assert "\\x1b[2J" in out.stdout  # shown, escaped
    finally:
        as_hub_user(container, f"mv {record}.real {record}")


def test_rollback_never_writes_the_database_through_a_link_the_hub_user_planted(container, install):
    """Reproduced before: `barehub rollback` restored the backup with root's sqlite3.connect() through
    state/jupyterhub.sqlite, a link to a root-only database: root overwrote it."""
    victim = "/etc/barehub-test/root-only.sqlite"
    container.run(f"mkdir -p /etc/barehub-test && rm -f {victim}")
    container.run("python3 -", input=f"import sqlite3, os\nc = sqlite3.connect({victim!r})\n"
                                    "c.execute('create table t (x)')\nc.execute(\"insert into t values ('root only')\")\n"
                                    f"c.commit()\nos.chmod({victim!r}, 0o600)\n")
    backup = f"{PREFIX}/backups/20260101T000000Z-from-test"
    container.run(f"mkdir -p -m 700 {backup} && cp {PREFIX}/records/release.json {backup}/")
    container.run("python3 -", input=f"import sqlite3\nsqlite3.connect({STATE + '/jupyterhub.sqlite'!r}).backup("
                                    f"sqlite3.connect({backup + '/jupyterhub.sqlite'!r}))\n")
    before = container.run(f"sha256sum {victim}").stdout
    db = f"{STATE}/jupyterhub.sqlite"
    assert as_hub_user(container, f"mv {db} {db}.real && ln -s {victim} {db}").returncode == 0
    try:
        rollback = container.run(f"barehub rollback --backup {backup.rsplit('/', 1)[1]}", check=False)
        assert rollback.returncode == 1 and f"{db} is a symbolic link" in rollback.stderr, rollback.stderr
        assert container.run(f"sha256sum {victim}").stdout == before
        assert hub_is_healthy()  # refused before the hub was stopped
    finally:
        as_hub_user(container, f"rm -f {db} && mv {db}.real {db}")
        container.run(f"rm -rf {backup} {victim}")


def test_records_that_decide_users_and_executables_are_roots(container, install):
    for record in ("install.json", "release.json"):
        assert as_hub_user(container, f"echo '{{}}' > {PREFIX}/records/{record}").returncode != 0
    # where releases up to 2026.11.0 kept them: a root run must not take a hub user or an env from there
    as_hub_user(container, f"""echo '{{"hub_user": "root"}}' > {STATE}/install.json && """
                           f"""echo '{{"version": "2026.10.0", "env": "../../tmp/evil"}}' > {STATE}/release.json""")
    container.run(bootstrap_cmd(), timeout=900)
    unit = container.run(f"systemctl cat {HUB}").stdout
    assert f"User={HUB_USER}" in unit
    assert container.run(f"ps -o user= -p {container.main_pid(HUB)}").stdout.strip() == HUB_USER
    assert json.loads(container.run(f"cat {PREFIX}/records/install.json").stdout)["hub_user"] == HUB_USER
    rollback = container.run("barehub rollback", check=False)  # no upgrade yet: nothing to go back to
    assert rollback.returncode == 1 and "no backups in" in rollback.stderr
    assert container.run("readlink /opt/barehub/conda").stdout.strip().startswith("envs/")


def test_a_module_planted_in_the_hubs_working_directory_is_never_imported(container, install):
    marker = "/tmp/planted-code-ran"
    code = f"import os\nopen('{marker}', 'a').write(f'uid {{os.getuid()}}\\n')\n"
    for package in ("barehub", "jupyterhub_idle_culler"):
        container.run(f"runuser -u {HUB_USER} -- mkdir -p {STATE}/{package}")
        container.run(f"runuser -u {HUB_USER} -- tee {STATE}/{package}/__init__.py {STATE}/{package}/__main__.py "
                      f"{STATE}/{package}/hub.py >/dev/null", input=code)
    try:
        container.run(f"systemctl restart {HUB}")
        wait_until(hub_is_healthy, 120)
        container.run(f"systemctl reload {HUB}")  # ExecReload runs `barehub reload` as root, in state/
        container.run(bootstrap_cmd(), timeout=900)
        assert container.run(f"test -e {marker}", check=False).returncode != 0, container.run(f"cat {marker}").stdout
        assert hub_is_healthy()
    finally:
        container.run(f"rm -rf {STATE}/barehub {STATE}/jupyterhub_idle_culler {marker}")
