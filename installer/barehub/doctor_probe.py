"""The job `barehub doctor slurm` submits: what a user's server job does, reduced to the hops it needs.

Run on the compute node by the hub env's python (the one slurm.py's jobs run), it prints one line per finding
to the job's output, which the doctor reads on the login node:
    node NAME | hub-api ok STATUS VERSION | hub-api fail WHY | listening PORT | listen fail WHY
then waits (bounded) for the login node to connect to that port, answers, and exits. It asks the hub's API with
requests, as the server's port report does (the same certificates are trusted).
"""
from __future__ import annotations

import argparse
import re
import select
import socket

from barehub.batch_singleuser import hold_port, parse_range

BANNER = b"barehub-doctor\n"


def say(line: str) -> None:
    print(line, flush=True)


def ask_hub_api(api_url: str, timeout: float) -> str:
    """GET the hub API's root (no token needed): what a server does first, reporting its port."""
    import requests

    try:
        r = requests.get(api_url.rstrip("/") + "/", timeout=timeout)
        r.raise_for_status()
        return f"hub-api ok {r.status_code} {r.json().get('version', '?')}"
    except Exception as e:  # noqa: BLE001 (every failure is the finding)
        return f"hub-api fail {type(e).__name__}: {root_cause(e)}"


def root_cause(error: Exception) -> str:
    """The system's words ("[Errno 111] Connection refused"), not urllib3's wrapping of them, when it has them."""
    found = re.search(r"\[Errno -?\d+\] [^'\")]+", str(error))
    return found.group(0) if found else str(error)


def answer_one_connection(port_range: str, wait: float) -> None:
    """On a port of the range, held as a server's job holds its port (barehub.batch_singleuser.hold_port)."""
    try:
        port, sockets = hold_port(parse_range(port_range))
    except (OSError, RuntimeError, ValueError) as e:
        say(f"listen fail {e}")
        return
    try:
        say(f"listening {port}")
        ready, _, _ = select.select(sockets, [], [], wait)  # IPv4 or IPv6, whichever the node's name leads to
        if not ready:
            return
        conn, _ = ready[0].accept()
        with conn:
            conn.settimeout(10)
            conn.sendall(BANNER)
    finally:
        for sock in sockets:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hub-api", required=True)
    parser.add_argument("--port-range", required=True)
    parser.add_argument("--wait", type=float, default=60)
    args = parser.parse_args()
    say(f"node {socket.gethostname()}")
    say(ask_hub_api(args.hub_api, timeout=10))
    answer_one_connection(args.port_range, args.wait)


if __name__ == "__main__":
    main()
