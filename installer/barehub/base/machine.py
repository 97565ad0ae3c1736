"""What barehub needs of the machine it installs on: root, a recent enough systemd."""
from __future__ import annotations

import os
from typing import Optional

from .errors import BarehubError


MIN_SYSTEMD = 243  # jupyterhub-systemdspawner's SYSTEMD_REQUIRED_VERSION: user servers are its units


def systemd_version(version_output: str) -> Optional[int]:
    """The major version from `systemctl --version` ("systemd 252 (252.39-1~deb12u2)"), if it says one."""
    words = version_output.split()
    if len(words) >= 2 and words[0] == "systemd":
        try:
            return int(words[1].split(".")[0])
        except ValueError:
            return None
    return None


def check_systemd_version(version_output: str) -> None:
    """Refuse a systemd too old for server units (the spawner would stop the hub at every start)."""
    version = systemd_version(version_output)
    if version is not None and version < MIN_SYSTEMD:
        raise BarehubError(
            f"systemd {version} is too old: barehub needs systemd {MIN_SYSTEMD} or newer",
            f"user servers are systemd units (jupyterhub-systemdspawner needs {MIN_SYSTEMD}+, and stops the "
            "hub on older ones); use a newer distribution (RHEL 9, Debian 11, Ubuntu 22.04 or later)",
        )


def require_root(command: str, why: str = "", hint: str = "run it with sudo") -> None:
    """Refuse to run `command` as anyone but root (every command that changes an install, or acts as users)."""
    if os.geteuid() != 0:
        raise BarehubError(f"{command} {why or 'must run as root'}", hint)
