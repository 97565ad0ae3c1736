"""batchspawner-singleuser, with the server's port taken from a range (BAREHUB_PORT_RANGE="40000-40999") and held
from before the hub hears of it until the server serves on it, and a job that ends, saying why, when it cannot
tell the hub its port (asked again for REPORT_RETRY seconds first).

Compute nodes often only let the hub's network reach a range of ports; upstream picks any free port. Upstream
also ignores the answer to its port report: a node that cannot reach the hub (a firewall, a wrong HUB_URL) ran
a server the hub never heard of, and the user waited the whole start_timeout. Here the job ends at once, its
log says what failed, and the spawner tells the user (barehub.slurm_spawner).

Why the port is held, not just picked. A compute node is shared: other users' jobs run there too. Upstream (and
barehub before) found a free port by binding a socket and closing it, reported the port, and only then started
jupyter-server, which bound the port again. In between (from the report to the server's bind: 2.5 to 2.8 s
measured, jupyterhub-singleuser 6.1.1 with JupyterLab) the port was free, and another user on the node could
take it: the hub then sent /user/NAME/ to her listener, which could show a login page, or receive the user's
OAuth code. jupyter-server's port_retries (50 by default) would even have moved the real server to another port
without a word. Here:
- hold_port binds the port AND listens on it, on every address of the node (0.0.0.0, and [::] where the node
  has IPv6), before the port is reported. Linux lets no other socket bind an address:port that overlaps a
  listening socket, with or without SO_REUSEADDR (only SO_REUSEPORT under the same uid would share it, and it is
  not set here); each socket listens right after its bind, and a port where anything else got there first
  (its bind or listen fails) is skipped, so the job never reports a port it does not hold (all of this is
  tried for real in tests/unit/test_batch_singleuser.py).
- hand_over makes tornado's bind_sockets (which jupyter-server's HTTPServer.listen, and its own free-port check,
  call) return those very sockets for that port on a wildcard address, instead of binding anew: the port is
  never free between the report and the server, and the server serves the connections that waited meanwhile
  (the kernel queues them on the held socket). A bind of any other port, or of a specific address, is tornado's
  own (on the held port that fails loudly: EADDRINUSE).
- the server gets --ServerApp.port_retries=0 on its command line (which outranks the user's config files):
  should the held port not reach it, it exits instead of moving elsewhere.
The server listens on all the node's addresses, IPv4 and IPv6 (as tornado does for ip ""), where batchspawner's
ip "0.0.0.0" asked for IPv4 only: an IPv6 half left unbound could be squatted (the hub reaches the node by its
name, which may resolve to IPv6), one held but unserved would hang connections.
Usage in a fragment: c.BatchSpawnerBase.batchspawner_singleuser_cmd = f"{sys.executable} -m barehub.batch_singleuser"
"""
from __future__ import annotations

import errno
import os
import random
import socket
import sys
import time
from runpy import run_path
from shutil import which
from urllib.parse import urlparse, urlunparse

from barehub.lazy_imports import defer_slow_imports

REPORT_TIMEOUT = 10  # seconds for one answer from the hub
# Seconds an unreachable hub (or traefik's 502/503 while the hub restarts: 3 s measured) is asked again; a
# refusal (4xx) ends the job at once.
REPORT_RETRY = 20
# Ports a job may use, and the hub accepts, when the site sets no range (below 1024 only root may listen)
ANY_PORT = range(1024, 65536)
BACKLOG = 128  # tornado's own listen() backlog
WILDCARDS = (None, "", "0.0.0.0", "::")  # the addresses meaning "all of the node's", as tornado takes them
NO_PORT_RETRIES = "--ServerApp.port_retries=0"


def parse_range(spec: str) -> range:
    """"40000-40999" (or one port, "40000") as a range of ports within 1..65535."""
    low, dash, high = spec.partition("-")
    try:
        ports = range(int(low), int(high if dash else low) + 1)
    except ValueError:
        ports = range(0)
    if not ports or ports.start < 1 or ports.stop > 65536:
        raise ValueError(f"{spec!r} is not a port range like 40000-40999 (ports 1 to 65535, the lower first)")
    return ports


def hold_port(ports: range) -> tuple[int, list[socket.socket]]:
    """A port of `ports` this process now listens on, on every address of the node, and its sockets. Tried from
    a random place in the range (upstream's port is random too), every port once."""
    start = random.randrange(len(ports))
    for i in range(len(ports)):
        port = ports[(start + i) % len(ports)]
        try:
            return port, listen_everywhere(port)
        except OSError:
            continue
    raise RuntimeError(f"no free port in {ports.start}-{ports.stop - 1} on {socket.gethostname()}")


def listen_everywhere(port: int) -> list[socket.socket]:
    """Listening sockets on 0.0.0.0:port and, where the node has IPv6, [::]:port (IPv6 only, as tornado binds
    them); raises OSError, holding nothing, when anything else has the port on any address. SO_REUSEADDR (as
    tornado sets it) lets a port whose last server's connections linger in TIME_WAIT be used; it lets no one in
    once the socket listens, and if someone bound first and listens first, listen() here fails."""
    sockets: list[socket.socket] = []
    try:
        for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                if family == socket.AF_INET6:  # a kernel without IPv6: nobody can bind IPv6 either
                    continue
                raise
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setblocking(False)  # as tornado's own; its dups, handed over, are too
            try:
                sock.bind((address, port))
            except OSError as e:
                if family == socket.AF_INET6 and e.errno == errno.EADDRNOTAVAIL:  # IPv6 there, but not usable
                    sockets.pop().close()
                    continue
                raise
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def hand_over(port: int, held: list[socket.socket]) -> None:
    """From now on, tornado's bind_sockets (and the names modules imported it under) returns copies (dup) of the
    `held` sockets for `port` on a wildcard address: what the server then closes (jupyter-server's free-port
    check closes what it bound) or stops closes its copy only, and the port stays held by this process."""
    import tornado.netutil
    import tornado.tcpserver

    original = tornado.netutil.bind_sockets

    def bind_sockets(requested, address=None, family=socket.AF_UNSPEC, *args, **kwargs):
        if requested != port or address not in WILDCARDS:
            return original(requested, address, family, *args, **kwargs)
        return [sock.dup() for sock in held if family in (socket.AF_UNSPEC, sock.family)]

    # tornado.tcpserver imported the name already; jupyter_server.serverapp does when the server imports it (or
    # did, if something imported it before)
    for module in (tornado.netutil, tornado.tcpserver, sys.modules.get("jupyter_server.serverapp")):
        if module is not None:
            module.bind_sockets = bind_sockets


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
    defer_slow_imports()  # the job's server starts 0.8 s sooner (barehub.lazy_imports: jupyter-server imports them too)
    spec = os.environ.get("BAREHUB_PORT_RANGE")
    port, held = hold_port(parse_range(spec) if spec else ANY_PORT)
    report_port(port)  # the port is held: nobody else can listen there meanwhile
    hand_over(port, held)
    service_url = os.environ.get("JUPYTERHUB_SERVICE_URL", "")
    if service_url:  # the server listens where JUPYTERHUB_SERVICE_URL says
        url = urlparse(service_url)
        host = f"[{url.hostname}]" if ":" in (url.hostname or "") else url.hostname or ""
        os.environ["JUPYTERHUB_SERVICE_URL"] = urlunparse(url._replace(netloc=f"{host}:{port}"))
    else:
        sys.argv.append(f"--port={port}")
    command = which(sys.argv[1])
    sys.argv = [*sys.argv[1:], NO_PORT_RETRIES]
    run_path(command, run_name="__main__")


if __name__ == "__main__":
    main()
