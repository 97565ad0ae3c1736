"""Secrets are generated once, stored 0600 in state/, and never printed or logged."""
from __future__ import annotations

import os
import pwd
import secrets as _random  # stdlib
from pathlib import Path

from barehub.fsutil import FileSpec, atomic_write, primary_group
from barehub.paths import Paths


def ensure_secret(path: Path, owner: str = "root", nbytes: int = 32) -> bool:
    """Create a random hex secret at `path` unless one exists. Returns whether one was made.

    An existing secret is kept as it is (only its mode and owner are tightened), so re-running
    the installer never logs users out or breaks the hub<->proxy link.
    """
    try:
        value = path.read_text()
    except FileNotFoundError:
        value = ""
    if value.strip():
        atomic_write(path, FileSpec(value, 0o600, owner, primary_group(owner)))
        return False
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
    """Create `path` empty if missing, and make it 0600 `owner`'s (SQLite keeps an existing file's mode)."""
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        user = pwd.getpwnam(owner)
        os.fchown(fd, user.pw_uid, user.pw_gid)
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def read_secret(path: Path) -> str:
    return path.read_text().strip()



