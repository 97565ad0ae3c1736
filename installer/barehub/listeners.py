"""Who would answer a connection to a local TCP address: the accounts (uids) whose sockets listen there, from the
kernel's own tables.

Why. A local server is handed its port a few seconds before it binds it (upstream SystemdSpawner's start: the port
is chosen, written into the server's environment, then the unit starts). Any account on the machine can bind a free
port meanwhile: on a login node every user can. Then her server fails ("address already in use"), and JupyterHub,
which only waits for *something* to answer HTTP on that port, routes her /user/NAME/ to the other program, and her
browser sends it the cookie of her own server. barehub.local_spawner asks this before the route is made.

The uid is the one the kernel records for each socket (/proc/net/tcp's uid column: who created it). Reading it needs
no privilege: the hub's sandbox hides other users' processes (ProtectProc=invisible) and it holds no CAP_SYS_PTRACE,
so it could not look at a server's own open files, but it sees its network namespace's tables.

Which sockets count: the kernel gives a connection to ADDRESS:PORT to a socket listening on that very address if
there is one, else to one listening on any address (0.0.0.0, or :: which also takes IPv4 unless it was made
IPv6-only). A socket on another address (127.0.0.2:PORT) never gets it, so another account listening there does
not make her server a stranger's.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path

# a line of /proc/net/tcp{,6} in the LISTEN state (0A): its local address and port (hex), and its uid
LISTENING = re.compile(r"^ *\d+: ([0-9A-F]+):([0-9A-F]{4}) [0-9A-F]+:[0-9A-F]{4} 0A \S+ \S+ \S+ +(\d+) ", re.M)
ANY = (ipaddress.ip_address("0.0.0.0"), ipaddress.ip_address("::"))


def address(hex_address: str):
    """/proc/net/tcp's address: 32-bit words in the kernel's (little-endian) byte order; an IPv4-mapped IPv6 address
    as its IPv4 one."""
    raw = b"".join(bytes.fromhex(hex_address[i:i + 8])[::-1] for i in range(0, len(hex_address), 8))
    ip = ipaddress.ip_address(raw)
    return ip.ipv4_mapped or ip if ip.version == 6 else ip


def listening_on(ports, proc: Path = Path("/proc")) -> dict[int, set[tuple]]:
    """{port: {(address, uid) of each TCP socket listening on it}} in this network namespace (IPv4 and IPv6), for
    each of `ports` that has any. One pass over each table."""
    wanted, found = set(ports), {}
    for table in ("tcp", "tcp6"):
        try:
            text = (proc / "net" / table).read_text()
        except OSError:
            continue
        for hex_address, port, uid in LISTENING.findall(text):
            if int(port, 16) in wanted:
                found.setdefault(int(port, 16), set()).add((address(hex_address), int(uid)))
    return found


def answering(listeners: set[tuple], ip: str) -> set[int]:
    """The uids whose sockets, among `listeners` of one port, a connection to `ip` on it can reach (every listener's,
    for a host name: which address it resolves to is not known here)."""
    try:
        target = ipaddress.ip_address(ip)
    except ValueError:
        return {uid for _, uid in listeners}
    exact = {uid for where, uid in listeners if where == target}
    return exact or {uid for where, uid in listeners if where in ANY}
