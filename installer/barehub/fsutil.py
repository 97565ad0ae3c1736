"""Atomic, owner- and mode-exact file writes (temp file + rename): a reader never sees half a file.

Root also works in directories a less privileged user can write (state/ is the hub user's, proxy/acme the
proxy user's). There it never follows what that user could plant: files are opened with O_NOFOLLOW and
checked on the open descriptor (a regular file with one name, not a hard link to /etc/shadow), and owner
and mode are changed on that descriptor (fchown), never by path. Rendered files are replaced by a rename,
which replaces a planted link instead of writing through it.
"""
from __future__ import annotations

import errno
import grp
import logging
import os
import pwd
import tempfile
from dataclasses import dataclass
from pathlib import Path

from barehub.base.errors import BarehubError
from barehub.base.records import open_no_follow

log = logging.getLogger("barehub")


@dataclass(frozen=True)
class FileSpec:
    """What a rendered file should be: its text and who may read it."""

    text: str
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"


def primary_group(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def uid_of(user: str) -> int | None:
    """The uid of `user`, or None where there is no such account."""
    try:
        return pwd.getpwnam(user).pw_uid
    except KeyError:
        return None


def uid_gid(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def read_private(path: Path) -> str:
    """The text of a file in a directory another user can write (see open_no_follow)."""
    with os.fdopen(open_no_follow(path)) as f:
        return f.read()


def is_current(path: Path, spec: FileSpec) -> bool:
    """Whether `path` is already `spec`: a link, whatever it points to, is not (the write replaces it)."""
    try:
        fd = open_no_follow(path)
    except (OSError, BarehubError):
        return False
    with os.fdopen(fd) as f:
        st = os.fstat(fd)
        same_meta = (st.st_mode & 0o7777, st.st_uid, st.st_gid) == (spec.mode, *uid_gid(spec.owner, spec.group))
        try:
            return same_meta and f.read() == spec.text
        except UnicodeDecodeError:
            return False


def own_private(fd: int, owner: str, mode: int, path: Path) -> None:
    """Make the open file `owner`'s private file. Only the group is changed on a file that is already hers:
    one of anyone else (root's key, renamed by the hub user to a secret's name) is never given to her; a
    change of --hub-user hands the previous hub user's files over first (layout.make_directories)."""
    uid, gid = uid_gid(owner, primary_group(owner))
    if os.fstat(fd).st_uid != uid:
        raise BarehubError(f"{path} belongs to uid {os.fstat(fd).st_uid}, not to {owner}: root does not give it away",
                           "remove it (and find out who put it there), then run again")
    os.fchown(fd, uid, gid)
    os.fchmod(fd, mode)


def chown_contents(directory: Path, uid: int, gid: int, from_uids: set[int]) -> list[Path]:
    """Give the files directly in `directory` that belong to one of `from_uids` (the hub user before a change
    of --hub-user) to uid:gid. Returns the files given.

    A file of anyone else (root's above all) is never given away, whatever its name: the owner of the
    directory can rename any file in it. Links are left alone: a symbolic link is skipped, a file with more
    than one name is skipped with a warning (chowning it would chown whatever it is linked to, /etc/shadow
    say). The owner is checked and changed on the open file.
    """
    given = []
    for child in sorted(directory.iterdir()):
        if child.is_dir() and not child.is_symlink():
            continue  # a directory has its own entry in the layout
        try:
            fd = open_no_follow(child)
        except BarehubError as e:
            if not child.is_symlink():  # the hub writes its own links; they own nothing
                log.warning("%s", e.message)
            continue
        except OSError:
            continue  # gone meanwhile, or a socket
        try:
            if os.fstat(fd).st_uid in from_uids - {uid}:
                os.fchown(fd, uid, gid)
                given.append(child)
        finally:
            os.close(fd)
    return given


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


def ensure_dir(path: Path, mode: int, owner: str = "root", group: str = "root") -> int:
    """Create `path` (and parents) and set its exact mode and owner, on the open directory: a directory of an
    old layout may be another user's, and a link planted in its place is refused, never followed (chown
    through it would give away whatever it points to). Returns the uid that owned it before."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.ENOTDIR):
            raise BarehubError(f"{path} is a link or not a directory: root does not follow links in a directory "
                               "another user can write", "remove it (and find out who put it there), then run again")
        raise
    try:
        before = os.fstat(fd).st_uid
        os.fchown(fd, *uid_gid(owner, group))
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    return before
