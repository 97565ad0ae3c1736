"""Root's records: their format, reading what earlier runs left (and where older installs kept it), and
root's one safe open of a file in another user's directory."""
from __future__ import annotations

import errno
import json
import os
import stat
from pathlib import Path
from typing import Dict

from .errors import BarehubError
from .paths import Paths

# The format of root's records (install.json, release.json), which they carry; barehub.migrations converts
# those of older installs (without it: format 1 in records/, 0 in state/).
FORMAT = 2


def open_no_follow(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of the regular, single-named file at `path`, never through a link another user planted.

    The one way root opens a file in a directory another user can write (state/, proxy/dynamic/routes/,
    proxy/acme/): O_NOFOLLOW, O_NONBLOCK (a FIFO planted there must not hang root), then checked on the
    descriptor. Raises FileNotFoundError when there is none (without O_CREAT), and BarehubError, naming the
    file, for a symbolic link, a hard link or anything but a regular file.
    """
    hint = "remove it (and find out who put it there), then run again"
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BarehubError(f"{path} is a symbolic link: root does not follow links in a directory another "
                               "user can write", hint) from None
        if e.errno in (errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP):  # a FIFO, socket, directory, device
            raise BarehubError(f"{path} is not a regular file: root does not touch it", hint) from None
        raise
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return fd
    os.close(fd)
    what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"a hard link ({st.st_nlink} names)"
    raise BarehubError(f"{path} is {what}: root does not touch it", hint)


def read_json_dict(path: Path) -> Dict:
    """A JSON object an earlier run wrote, or {} if there is none (or it is unreadable, or not a regular file)."""
    try:
        with open(open_no_follow(path)) as f:
            data = json.load(f)
    except (OSError, ValueError, BarehubError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_settings(paths: Paths) -> Dict:
    """What an earlier install of this prefix chose, for bootstrap.py's checks before the installer runs:
    records/install.json, or state/install.json where releases before records/ kept it (the installer moves
    it: barehub.migrations)."""
    return read_json_dict(paths.settings_file) or read_json_dict(legacy_record(paths, paths.settings_file))


def legacy_record(paths: Paths, record: Path) -> Path:
    """Where releases before records/ kept a record: state/, which the hub user owns."""
    return paths.state / record.name


def remembered_source(paths: Paths) -> Dict:
    """Where an earlier run of this prefix took its envs from (bootstrap.py writes it)."""
    return read_json_dict(paths.env_source_file)
