"""The known-good config: a copy of the fragments with which the hub last became healthy.

Kept by root in PREFIX/records/known-good (0750 root:hub group; fragments may carry secrets), so the hub
user cannot change what the hub falls back to. barehub.hub loads it when the current fragments fail.
"""
from __future__ import annotations

import os
import shutil
import tempfile

from barehub.config_loading import fragments_digest, read_set
from barehub.fsutil import primary_group, uid_gid
from barehub.base.paths import Paths


def promote(paths: Paths, digest: str, hub_user: str) -> bool:
    """Record the current fragments as known-good, if they are the set (`digest`) the healthy hub loaded.

    Returns False when the files changed since the hub loaded them (they are not known to be good).
    """
    contents = read_set(paths.config_d)
    if fragments_digest(contents) != digest:
        return False
    if paths.known_good.is_dir() and fragments_digest(read_set(paths.known_good)) == digest:
        return True
    uid, gid = uid_gid("root", primary_group(hub_user))
    staging = tempfile.mkdtemp(dir=paths.records, prefix=".known-good.")
    for name, data in contents.items():
        fd = os.open(os.path.join(staging, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        os.fchown(fd, uid, gid)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    os.chown(staging, uid, gid)
    os.chmod(staging, 0o750)
    old = paths.records / ".known-good.old"
    shutil.rmtree(old, ignore_errors=True)
    if paths.known_good.exists():
        os.replace(paths.known_good, old)
    os.replace(staging, paths.known_good)
    shutil.rmtree(old, ignore_errors=True)
    return True
