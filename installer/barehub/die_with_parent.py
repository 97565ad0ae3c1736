"""Run a command that dies with its parent: `python -m barehub.die_with_parent CMD ARGS...`.

For hub-managed services such as the idle culler: a hub that dies without cleaning up must not leave
its services running next to the next hub's. systemd ends them when the hub unit stops or restarts
(its KillMode is the default since user servers are their own units); this also covers a hub run by
hand or under another supervisor. PR_SET_PDEATHSIG survives the exec below.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """SIGTERM to this process when its parent dies (kept across exec); exits at once if the parent is gone."""
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent or parent == 1:
        os._exit(1)  # the parent died before prctl took effect: orphans go to PID 1


def main(argv: list[str]) -> None:
    die_with_parent()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
