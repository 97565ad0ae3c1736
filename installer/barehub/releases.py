"""The install's records (root's, in records/): which release is installed, backups taken before a
release changes and restoring them, and adopting the records of installs made before records/ existed.

A backup is a directory PREFIX/backups/<UTC time>-from-<release>/ holding a consistent copy of the
database (SQLite's backup API, taken while the hub runs), the install settings and the release
record: enough to go back. Backups are kept; removing old ones is the admin's call.
"""
from __future__ import annotations

import json
import os
import pwd
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from barehub.shared import BarehubError, read_json_dict
from barehub.fsutil import FileSpec, atomic_write
from barehub.paths import Paths


RECORD_MODE = 0o644  # root's records in records/: the hub reads the settings, nobody else writes them


@dataclass(frozen=True)
class Release:
    version: str
    env: str  # the env directory, relative to the prefix (envs/<release>)


def adopt_legacy_records(paths: Paths) -> list[str]:
    """Move the settings and release records of an install made before records/ existed out of state/.

    state/ is the hub user's: with a `--hub-user` install, that user could have rewritten them. Root
    therefore takes from them nothing it cannot check: the hub user is the owner of state/ and the proxy
    user the owner of proxy/acme (both set by root), an env must be one of PREFIX/envs. Returns the names
    of the records adopted. Runs under the install lock, before anything reads a record.
    """
    adopted = []
    paths.records.mkdir(mode=0o755, exist_ok=True)
    state = paths.state.lstat() if paths.state.is_dir() and not paths.state.is_symlink() else None
    for record in (paths.settings_file, paths.release_file):
        legacy = paths.legacy_record(record)
        if state is None or record.exists() or not legacy.is_file() or legacy.is_symlink():
            continue
        data = read_json_dict(legacy)
        if record == paths.settings_file and state.st_uid != 0:
            data["hub_user"] = pwd.getpwuid(state.st_uid).pw_name
            acme = paths.acme_dir
            if acme.is_dir() and not acme.is_symlink() and acme.lstat().st_uid != 0:
                data["proxy_user"] = pwd.getpwuid(acme.lstat().st_uid).pw_name
        if record == paths.release_file and not env_in_prefix(paths, str(data.get("env", ""))):
            data.pop("env", None)
        atomic_write(record, FileSpec(json.dumps(data, indent=2, sort_keys=True) + "\n", RECORD_MODE))
        legacy.unlink()
        adopted.append(record.name)
    return adopted


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
    text = json.dumps({"version": release.version, "env": release.env}, indent=2) + "\n"
    atomic_write(paths.release_file, FileSpec(text, RECORD_MODE))


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
    if paths.db_file.exists():
        (target / paths.db_file.name).touch(mode=0o600)
        copy_database(paths.db_file, target / paths.db_file.name)
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
    db = backup_dir / paths.db_file.name
    if db.exists():
        copy_database(db, paths.db_file)  # page by page into the existing file: its mode and owner stay
    for record in (paths.settings_file, paths.release_file):
        if (backup_dir / record.name).exists():
            atomic_write(record, FileSpec((backup_dir / record.name).read_text(), RECORD_MODE))
    return release


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, even while a hub writes to the source."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
