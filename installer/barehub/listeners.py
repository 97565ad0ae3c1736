"""Who listens on a local TCP port: the accounts (uids) whose sockets listen on it, from the kernel's own tables.

Why. A local server is handed its port a few seconds before it binds it (upstream SystemdSpawner's start: the port
is chosen, written into the server's environment, then the unit starts). Any account on the machine can bind a free
port meanwhile: on a login node every user can. Then her server fails ("address already in use"), and JupyterHub,
which only waits for *something* to answer HTTP on that port, routes her /user/NAME/ to the other program, and her
browser sends it the cookie of her own server. barehub.local_spawner asks this before the route is made.

The uid is the one the kernel records for each socket (/proc/net/tcp's uid column: who created it). Reading it needs
no privilege: the hub's sandbox hides other users' processes (ProtectProc=invisible) and it holds no CAP_SYS_PTRACE,
so it could not look at a server's own open files, but it sees its network namespace's tables.
"""
from __future__ import annotations

import re
from pathlib import Path

# a line of /proc/net/tcp{,6} in the LISTEN state (0A): its local port (hex) and its uid
LISTENING = re.compile(r"^ *\d+: [0-9A-F]+:([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A \S+ \S+ \S+ +(\d+) ", re.M)


def listening_on(ports, proc: Path = Path("/proc")) -> dict[int, set[int]]:
    """{port: the uids whose TCP sockets (IPv4 and IPv6, any address) listen on it} in this network namespace, for
    each of `ports` that has any. One pass over each table."""
    wanted, found = set(ports), {}
    for table in ("tcp", "tcp6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        for port, uid in LISTENING.findall(text):
            if int(port, 16) in wanted:
                found.setdefault(int(port, 16), set()).add(int(uid))
    return found
