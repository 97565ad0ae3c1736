"""Atomic, owner- and mode-exact file writes (temp file + rename): a reader never sees half a file."""
from __future__ import annotations

import grp
import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FileSpec:
    """What a rendered file should be: its text and who may read it."""

    text: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


def primary_group(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def uid_gid(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def is_current(path: Path, spec: FileSpec) -> bool:
    try:
        st = path.stat()
        same_meta = (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (spec.mode, *uid_gid(spec.owner, spec.group))
        return same_meta and path.read_text() == spec.text
    except (FileNotFoundError, UnicodeDecodeError):
        return False


def atomic_write(path: Path, spec: FileSpec) -> bool:
    """Write `spec` to `path` unless it is already so. Returns whether anything changed."""
    if is_current(path, spec):
        return False
    uid, gid = uid_gid(spec.owner, spec.group)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, spec.mode)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "w") as f:
            f.write(spec.text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def ensure_dir(path: Path, mode: int, owner: str = "root", group: str = "root") -> None:
    """Create `path` (and parents) and set its exact mode and owner."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = uid_gid(owner, group)
    os.chown(path, uid, gid)
    os.chmod(path, mode)
