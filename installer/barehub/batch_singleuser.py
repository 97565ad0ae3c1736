"""batchspawner-singleuser, with the server's port taken from a range (BAREHUB_PORT_RANGE="40000-40999"), and
a job that ends, saying why, when it cannot tell the hub its port (asked again for REPORT_RETRY seconds first).

Compute nodes often only let the hub's network reach a range of ports; upstream picks any free port. Upstream
also ignores the answer to its port report: a node that cannot reach the hub (a firewall, a wrong HUB_URL) ran
a server the hub never heard of, and the user waited the whole start_timeout. Here the job ends at once, its
log says what failed, and the spawner tells the user (barehub.slurm_spawner).
Usage in a fragment: c.BatchSpawnerBase.batchspawner_singleuser_cmd = f"{sys.executable} -m barehub.batch_singleuser"
"""
from __future__ import annotations

import os
import random
import socket
import sys
import time
from runpy import run_path
from shutil import which
from urllib.parse import urlparse, urlunparse

REPORT_TIMEOUT = 10  # seconds for one answer from the hub
# Seconds an unreachable hub (or traefik's 502/503 while the hub restarts: 3 s measured) is asked again; a
# refusal (4xx) ends the job at once.
REPORT_RETRY = 20


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


def choose_port() -> int:
    spec = os.environ.get("BAREHUB_PORT_RANGE")
    if spec:
        return free_port_in(parse_range(spec))
    from jupyterhub.utils import random_port

    return random_port()


def report_port(port: int) -> None:
    """Tell the hub the server's port (POST /hub/api/batchspawner), or end the job saying why."""
    import requests
    from jupyterhub.services.auth import HubAuth
    from jupyterhub.utils import url_path_join

    hub_auth = HubAuth()
    url = url_path_join(hub_auth.api_url, "batchspawner")
    kwargs = {}
    if hub_auth.certfile and hub_auth.keyfile:
        kwargs["cert"] = (hub_auth.certfile, hub_auth.keyfile)
    if hub_auth.client_ca:
        kwargs["verify"] = hub_auth.client_ca
    deadline = time.monotonic() + REPORT_RETRY
    while True:
        try:
            r = requests.post(url, headers={"Authorization": f"token {hub_auth.api_token}"}, json={"port": port},
                              timeout=REPORT_TIMEOUT, **kwargs)
            if r.status_code < 500 or time.monotonic() > deadline:
                r.raise_for_status()
                return
        except requests.HTTPError as e:
            fail(url, e)
        except requests.RequestException as e:
            if time.monotonic() > deadline:
                fail(url, e)
        time.sleep(1)


def fail(url: str, error: Exception) -> None:
    raise SystemExit(f"barehub: {socket.gethostname()} could not tell the hub this server's port at {url}: {error}\n"
                     f"barehub: the compute nodes must reach the hub's public URL (HUB_URL in the Slurm "
                     f"fragment) and trust its certificate; `barehub doctor slurm` checks it") from None


def main() -> None:
    port = choose_port()
    report_port(port)
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    if service_url:  # the server listens where JUPYTERHUB_SERVICE_URL says
        url = urlparse(service_url)
        os.environ["JUPYTERHUB_SERVICE_URL"] = urlunparse(url._replace(netloc=f"{url.hostname}:{port}"))
    else:
        sys.argv.append(f"--port={port}")
    command = which(sys.argv[1])
    sys.argv = sys.argv[1:]
    run_path(command, run_name="__main__")


if __name__ == "__main__":
    main()
