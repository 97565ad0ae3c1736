"""Every root-side open of a path another user can write (state/: the hub user's; proxy/dynamic/routes/: the
hub user's; proxy/acme/: the proxy user's) goes through the no-follow, regular-file-only helper, or runs as
that user. Enumerated at run time, not by name: Python's audit hooks see every open() and sqlite3.connect()
this process makes while root-side code (install, status, check, backup, restore, rollback) runs against a
prefix whose hub-writable files are links, FIFOs and hard links planted by the hub user."""
from __future__ import annotations

import json
import os
import pwd
import sqlite3
import sys
import threading
import time

import pytest

from barehub import certificates, hub_run, layout, migrations, release_change, releases, secret_files
from barehub.base.records import legacy_record
from barehub.commands import status
from barehub.settings import Settings
from barehub.base.errors import BarehubError
from barehub.validation import load_config

NOBODY = pwd.getpwnam("nobody")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="root-side code runs as root")
EVENTS: list[tuple] = []
_hooked = False


def audit(event, args):
    if event in ("open", "sqlite3.connect", "os.chown", "os.chmod"):
        EVENTS.append((event, args))


@pytest.fixture
def recorded():
    global _hooked
    if not _hooked:  # audit hooks cannot be removed: one for the whole session, recording into EVENTS
        sys.addaudithook(audit)
        _hooked = True
    EVENTS.clear()
    yield EVENTS
    EVENTS.clear()


def traversable(path):
    """As an install's prefix is (0755 up to /): the hub user reaches her state/ (pytest's tmp is root's 0700)."""
    for parent in [path, *path.parents]:
        if parent == parent.parent or str(parent) == "/tmp":
            break
        parent.chmod(parent.stat().st_mode | 0o005)


@pytest.fixture
def planted(prefix, tmp_path):
    """A --hub-user install's prefix, its hub-writable files replaced by what the hub user could put there."""
    victim_db = tmp_path / "root-only.sqlite"
    db = sqlite3.connect(victim_db)
    db.execute("create table secret (x)")
    db.execute("insert into secret values ('root only')")
    db.commit()
    db.close()
    victim_db.chmod(0o600)
    victim = tmp_path / "shadow"
    victim.write_text("root:$6$secret\n")
    victim.chmod(0o600)
    traversable(prefix.prefix)
    prefix.traefik_routes_dir.mkdir(parents=True)
    prefix.acme_dir.mkdir()
    for directory in (prefix.state, prefix.traefik_routes_dir, prefix.acme_dir):
        os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    prefix.db_file.symlink_to(victim_db)
    os.mkfifo(prefix.hub_run_file)
    prefix.barehub_api_token.unlink()
    prefix.barehub_api_token.symlink_to(victim)
    os.link(victim, prefix.proxy_routes)
    prefix.traefik_rules.symlink_to(victim)
    prefix.acme_storage.symlink_to(victim)
    legacy_record(prefix, prefix.settings_file).symlink_to(victim)
    return prefix, victim_db, victim


def hub_writable(paths) -> tuple[str, ...]:
    return tuple(str(d) for d in (paths.state, paths.traefik_routes_dir, paths.acme_dir))


def violations(events, paths) -> list:
    """Opens under a hub-writable directory without O_NOFOLLOW, or without O_NONBLOCK/O_EXCL/O_DIRECTORY (a
    FIFO would hang it), and any SQLite connection or path-based chown/chmod there, made by this (root's) process."""
    bad = []
    for event, args in events:
        path = args[0]
        if not isinstance(path, (str, bytes, os.PathLike)):
            continue  # a descriptor: fchown/fchmod on a file opened by the helper
        path = os.fsdecode(path)
        if event == "sqlite3.connect" and path.startswith("file:"):  # a URI: file:PATH?mode=ro
            path = path[len("file:"):].split("?")[0]
        if not path.startswith(hub_writable(paths)):
            continue
        if event == "open":
            flags = args[2] or 0
            if not (flags & os.O_NOFOLLOW and flags & (os.O_NONBLOCK | os.O_EXCL | os.O_DIRECTORY)):
                bad.append((event, path, oct(flags)))
        else:
            bad.append((event, path))
    return bad


def within(seconds: float, work):
    """`work()` in a thread; fails if it does not return in time (a FIFO opened for reading blocks)."""
    result: list = []
    errors: list = []

    def run():
        try:
            result.append(work())
        except Exception as e:  # noqa: BLE001 - raised again in the test's thread
            errors.append(e)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{work} still running after {seconds} s (a FIFO?)"
    if errors:
        raise errors[0]
    return result[0] if result else None


def attempt(work):
    try:
        return work()
    except (BarehubError, OSError, KeyError) as e:
        return e


def test_root_side_code_opens_hub_writable_paths_only_through_the_helper(planted, recorded):
    paths, victim_db, victim = planted
    release = releases.Release("2026.10.0", "envs/2026.10.0")
    root_side = {
        "status: the hub's run record": lambda: hub_run.read_run(paths),
        "status: the service token": lambda: status.running_servers(paths, 1, "/"),
        "status: the ACME storage": lambda: certificates.acme_storage_problem(paths),
        "install: secrets": lambda: attempt(lambda: secret_files.ensure_all(paths, "nobody")),
        "install: the database file": lambda: attempt(lambda: secret_files.ensure_private_file(paths.db_file, "nobody")),
        "install: legacy records": lambda: attempt(lambda: migrations.adopt_legacy_records(paths, {})),
        "install: older layout": lambda: attempt(lambda: migrations.take_dynamic_dir_back(
            paths, Settings(hub_user="nobody", proxy_user="daemon"), "nobody")),
        "install: layout": lambda: attempt(lambda: layout.make_directories(
            paths, Settings(hub_user="nobody", proxy_user="daemon"), "nobody")),
        "check: the config": lambda: attempt(lambda: load_config(paths)),
        "upgrade: backup": lambda: attempt(lambda: releases.backup(paths, release)),
        "rollback: routes": lambda: attempt(lambda: release_change.give_routes_back_to(paths, release)),
    }
    for name, work in root_side.items():
        within(10, work)
    backup = paths.backups / "b"
    backup.mkdir(parents=True)
    image = sqlite3.connect(":memory:")
    image.execute("create table users (name)")
    (backup / paths.db_file.name).write_bytes(image.serialize())
    (backup / paths.release_file.name).write_text(json.dumps({"version": "2026.10.0", "env": "envs/2026.10.0"}))
    within(10, lambda: attempt(lambda: releases.restore(paths, backup)))  # rollback: the database

    assert violations(recorded, paths) == []
    assert [e for e in recorded if e[0] == "open" and str(e[1][0]).startswith(hub_writable(paths))], \
        "no open under the hub's directories was seen: the enumeration saw nothing"
    # what the links pointed to is as it was: root neither read it into a backup nor overwrote it
    assert sqlite3.connect(victim_db).execute("select x from secret").fetchall() == [("root only",)]
    assert victim.read_text() == "root:$6$secret\n" and victim.stat().st_uid == 0
    assert not any((d / "jupyterhub.sqlite").exists() and (d / "jupyterhub.sqlite").stat().st_size
                   for d in paths.backups.iterdir() if d != backup)


def test_a_fifo_as_the_run_record_does_not_hang_status_or_a_reload(planted):
    paths, _, _ = planted
    start = time.monotonic()
    assert within(5, lambda: hub_run.read_run(paths)) is None
    assert time.monotonic() - start < 2


def test_backup_and_restore_of_a_regular_database_work_as_the_hub_user(prefix):
    traversable(prefix.prefix)
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    db = sqlite3.connect(prefix.db_file)
    db.execute("create table users (name)")
    db.execute("insert into users values ('alice')")
    db.commit()
    db.close()
    os.chown(prefix.db_file, NOBODY.pw_uid, NOBODY.pw_gid)
    prefix.db_file.chmod(0o600)
    prefix.release_file.write_text(json.dumps({"version": "2026.10.0", "env": "envs/2026.10.0"}))
    backup = releases.backup(prefix, releases.Release("2026.10.0", "envs/2026.10.0"))
    assert (backup / prefix.db_file.name).stat().st_mode & 0o777 == 0o600
    db = sqlite3.connect(prefix.db_file)
    db.execute("insert into users values ('mallory')")
    db.commit()
    db.close()
    releases.restore(prefix, backup)
    st = prefix.db_file.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (NOBODY.pw_uid, 0o600)
    assert sqlite3.connect(prefix.db_file).execute("select name from users").fetchall() == [("alice",)]


def test_work_as_the_hub_user_that_hangs_is_stopped_and_a_fifo_database_is_refused(prefix):
    from barehub import as_user

    start = time.monotonic()
    with pytest.raises(BarehubError, match="did not finish within 1 s"):
        as_user.run_as("nobody", time.sleep, 30, timeout=1)  # a child she stopped (SIGSTOP), or one stuck on a FIFO
    assert time.monotonic() - start < 5
    traversable(prefix.prefix)
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    os.mkfifo(prefix.db_file)
    os.chown(prefix.db_file, NOBODY.pw_uid, NOBODY.pw_gid)
    with pytest.raises(BarehubError, match="jupyterhub.sqlite is not a regular file"):
        within(10, lambda: releases.backup(prefix, releases.Release("2026.10.0", "envs/2026.10.0")))
