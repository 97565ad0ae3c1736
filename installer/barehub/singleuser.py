"""A local user server's command, `barehub-singleuser`: jupyterhub-singleuser, started with barehub.lazy_imports'
stand-ins in place. jupyter-server imports jupyter_events, and so rfc3987_syntax's parser builds: measured with
`python -X importtime`, importing jupyter_server.serverapp took 1.84 s, 0.59 s with the stand-ins; every Start of a
server waits for it. (A Slurm job's command, barehub.batch_singleuser, puts them in place itself.)"""
from __future__ import annotations

import sys

from barehub.lazy_imports import defer_slow_imports


def main() -> int:
    defer_slow_imports()
    from jupyterhub.singleuser import main as singleuser

    return singleuser()


if __name__ == "__main__":
    sys.exit(main())
