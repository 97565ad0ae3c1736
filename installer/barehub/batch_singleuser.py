"""batchspawner-singleuser, with the server's port taken from a range (BAREHUB_PORT_RANGE="40000-40999").

Compute nodes often only let the hub's network reach a range of ports; upstream picks any free port.
Usage in a fragment: c.BatchSpawnerBase.batchspawner_singleuser_cmd = f"{sys.executable} -m barehub.batch_singleuser"
"""
from __future__ import annotations

import os
import random
import socket

from batchspawner import singleuser


def parse_range(spec: str) -> range:
    low, _, high = spec.partition("-")
    ports = range(int(low), int(high or low) + 1)
    if not ports or ports.start < 1 or ports.stop > 65536:
        raise ValueError(f"BAREHUB_PORT_RANGE={spec!r} is not a port range like 40000-40999")
    return ports


def free_port_in(ports: range) -> int:
    """A port of `ports` that nothing listens on now (tried in random order, like upstream's random port)."""
    for port in random.sample(ports, len(ports)):
        with socket.socket() as s:
            try:
                s.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} on {socket.gethostname()}")


def main() -> None:
    spec = os.environ.get("BAREHUB_PORT_RANGE")
    if spec:
        ports = parse_range(spec)
        singleuser.random_port = lambda: free_port_in(ports)
    singleuser.main()


if __name__ == "__main__":
    main()
