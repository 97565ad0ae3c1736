"""The install's records (root's, in records/): which release is installed, backups taken before a
release changes and restoring them (barehub.migrations converts those of older installs).

A backup is a directory PREFIX/backups/<UTC time>-from-<release>/ holding a consistent copy of the
database (SQLite's backup API, taken while the hub runs; a PostgreSQL database's pg_dump, barehub.postgres),
the install settings and the release record: enough to go back. Backups are kept; removing old ones is the admin's call.
"""
from __future__ import annotations

import json
import os
import pwd
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from barehub import postgres
from barehub.as_user import run_as
from barehub.base.errors import BarehubError
from barehub.base.paths import Paths
from barehub.base.records import FORMAT, open_no_follow, read_json_dict
from barehub.fsutil import FileSpec, atomic_write
from barehub.settings import load_settings, load_settings_file


RECORD_MODE = 0o644  # root's records in records/: the hub reads the settings, nobody else writes them


@dataclass(frozen=True)
class Release:
    version: str
    env: str  # the env directory, relative to the prefix (envs/<release>)


def env_in_prefix(paths: Paths, env: str) -> bool:
    """Whether a recorded env is one of this install's (envs/<release>), not a path someone planted."""
    parts = Path(env).parts
    return len(parts) == 2 and parts[0] == paths.envs.name and parts[1] not in ("", ".", "..")


def current_env(paths: Paths) -> str:
    return os.path.relpath(paths.env.resolve(), paths.prefix)


def read_release(paths: Paths, path: Path) -> Release | None:
    """A release record, if it is one: its env must be one of this install's (envs/<release>)."""
    data = read_json_dict(path)
    version, env = data.get("version"), data.get("env")
    if isinstance(version, str) and isinstance(env, str) and env_in_prefix(paths, env):
        return Release(version, env)
    return None


def write_release(paths: Paths, release: Release) -> None:
    text = json.dumps({"version": release.version, "env": release.env, "format": FORMAT}, indent=2) + "\n"
    atomic_write(paths.release_file, FileSpec(text, RECORD_MODE))


def state_owner(paths: Paths) -> str:
    """Whom the database belongs to: the owner root gave state/ (the hub user)."""
    return pwd.getpwuid(paths.state.lstat().st_uid).pw_name


def backup(paths: Paths, previous: Release) -> Path:
    """Copy the database and the install records aside, before anything of the release changes."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    paths.backups.mkdir(mode=0o700, exist_ok=True)
    os.chmod(paths.backups, 0o700)
    for n in range(1, 1000):  # two backups in one second: ".002" sorts after the first, before the next second
        target = paths.backups / (f"{stamp}-from-{previous.version}" if n == 1 else f"{stamp}.{n:03d}-from-{previous.version}")
        try:
            target.mkdir(mode=0o700)
            break
        except FileExistsError:
            continue
    db = postgres.Database.of(load_settings(paths))  # the database as it was before this run changed anything
    if db:
        postgres.dump(db, target)
    elif os.path.lexists(paths.db_file):
        image = run_as(state_owner(paths), database_image, str(paths.db_file))
        fd = os.open(target / paths.db_file.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(image)
    for record in (paths.settings_file, paths.release_file):
        if record.exists():
            atomic_write(target / record.name, FileSpec(record.read_text(), 0o600))
    return target


def list_backups(paths: Paths) -> list[Path]:
    if not paths.backups.is_dir():
        return []
    return sorted(p for p in paths.backups.iterdir() if p.is_dir() and (p / paths.release_file.name).exists())


def backup_release(paths: Paths, backup_dir: Path) -> Release:
    """The release a backup goes back to; a backup without a valid record of this install is refused."""
    release = read_release(paths, backup_dir / paths.release_file.name)
    if release is None:
        raise BarehubError(f"{backup_dir} has no valid release record ({paths.release_file.name} with a version "
                           f"and an env under {paths.envs})", "choose another backup: barehub rollback --list")
    return release


def restore(paths: Paths, backup_dir: Path) -> Release:
    """Put a backup's database and records back (the hub must be stopped). Returns its release."""
    release = backup_release(paths, backup_dir)
    dump = backup_dir / postgres.DUMP_NAME
    db = backup_dir / paths.db_file.name
    if dump.exists():  # into the database the backup's settings name, as the hub user they name
        db_then = postgres.Database.of(load_settings_file(backup_dir / paths.settings_file.name))
        if db_then is None:
            raise BarehubError(f"{backup_dir} holds a PostgreSQL dump, but its settings name no --db-url",
                               "choose another backup: barehub rollback --list")
        postgres.restore(db_then, dump)
    elif db.exists():
        image = db.read_bytes()  # root's own backup
        run_as(state_owner(paths), write_database, image, str(paths.db_file))
    for record in (paths.settings_file, paths.release_file):
        if (backup_dir / record.name).exists():
            atomic_write(record, FileSpec((backup_dir / record.name).read_text(), RECORD_MODE))
    return release


def database_image(path: str) -> bytes:
    """A consistent image of a SQLite database, even while a hub writes to it (SQLite's backup API).
    Runs as the hub user: the path is in her state/ (a FIFO there is refused, not waited on)."""
    os.close(open_no_follow(Path(path)))
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    memory = sqlite3.connect(":memory:")
    try:
        source.backup(memory)
        if memory.execute("pragma page_count").fetchone()[0] == 0:
            return b""  # an empty file (a hub that never started): SQLite cannot serialize no pages
        return memory.serialize()
    finally:
        memory.close()
        source.close()


def write_database(image: bytes, path: str) -> None:
    """Put a database image into the file at `path`, page by page into the existing file (its mode and
    owner stay). Runs as the hub user."""
    os.close(open_no_follow(Path(path), os.O_WRONLY | os.O_CREAT))  # a FIFO there is refused, not waited on
    if not image:  # the database was an empty file
        with open(path, "ab") as f:
            f.truncate(0)
        return
    memory = sqlite3.connect(":memory:")
    target = sqlite3.connect(path)
    try:
        memory.deserialize(image)
        memory.backup(target)
    finally:
        target.close()
        memory.close()
