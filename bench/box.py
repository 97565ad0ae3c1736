"""One booted systemd container with barehub installed by bootstrap.py and the bench's own config (configs/common.py:
the tiny server, an admin service whose token is returned, no user switching): what bench/sessions.py and
bench/activity.py each measure in."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from testbed.container import Container  # noqa: E402
from testbed.wheelhouse import CACHE, build_wheelhouse  # noqa: E402

HUB = "http://127.0.0.1:28080"
CONFIG_D = "/opt/barehub/jupyterhub_config.d"


@contextlib.contextmanager
def installed(name: str):
    """(the container, the bench service's token); the container is stopped at the end."""
    wheelhouse = build_wheelhouse(REPO, CACHE)
    box = Container(f"barehub-bench-{name}-{os.getpid()}",
                    {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse", str(REPO / "bench"): "/mnt/bench"},
                    Path(f"/tmp/barehub-bench-{name}-console.log"))
    box.boot()
    try:
        token = box.run("python3 -c 'import secrets; print(secrets.token_hex(16))'").stdout.strip()
        box.run(f"mkdir -p /etc/bench && echo {token} > /etc/bench/token && chmod 600 /etc/bench/token")
        box.run("/usr/bin/python3 /mnt/src/bootstrap.py --wheelhouse /mnt/wheelhouse --http-port 28080", timeout=900)
        box.run(f"cp /mnt/bench/configs/common.py {CONFIG_D}/90-bench.py")
        yield box, token
    finally:
        box.stop()
