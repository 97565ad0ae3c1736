"""Secrets are generated once, stored 0600 in state/, and never printed or logged."""
from __future__ import annotations

import os
import secrets as _random  # stdlib
from pathlib import Path

from barehub.base.records import open_no_follow
from barehub.fsutil import FileSpec, atomic_write, own_private, primary_group, read_private, uid_gid
from barehub.base.paths import Paths


def ensure_secret(path: Path, owner: str = "root", nbytes: int = 32) -> bool:
    """Create a random hex secret at `path` unless one exists. Returns whether one was made.

    An existing secret is kept as it is (only its mode and owner are tightened, on the open file), so
    re-running the installer never logs users out or breaks the hub<->proxy link. state/ is the hub
    user's: a link planted there is refused, never followed (barehub.base.records.open_no_follow).
    """
    try:
        with os.fdopen(open_no_follow(path)) as f:
            if f.read().strip():
                own_private(f.fileno(), owner, 0o600, path)
                return False
    except FileNotFoundError:
        pass
    atomic_write(path, FileSpec(_random.token_hex(nbytes) + "\n", 0o600, owner, primary_group(owner)))
    return True


def ensure_all(paths: Paths, hub_user: str) -> list[str]:
    """Every secret the hub needs. Returns the names of those created now."""
    wanted = {
        "cookie secret": paths.cookie_secret,
        "traefik API password": paths.traefik_api_password,
        "auth_state crypt key": paths.crypt_key,
        "barehub API token": paths.barehub_api_token,
    }
    return [name for name, path in wanted.items() if ensure_secret(path, owner=hub_user)]


def ensure_private_file(path: Path, owner: str) -> None:
    """Create `path` empty if missing, and make it 0600 `owner`'s (SQLite keeps an existing file's mode).
    Never through a link the hub user planted (the database is in its state/), and an existing file only if
    it is already `owner`'s."""
    try:
        fd = open_no_follow(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.fchown(fd, *uid_gid(owner, primary_group(owner)))  # made now, for the hub
    except FileExistsError:
        fd = open_no_follow(path, os.O_WRONLY)
    try:
        own_private(fd, owner, 0o600, path)
    finally:
        os.close(fd)


def read_secret(path: Path) -> str:
    """A secret from state/, which the hub user owns: root reads it only from a regular file there (a
    planted link to /etc/shadow would otherwise be read and sent to the hub as a token)."""
    return read_private(path).strip()
