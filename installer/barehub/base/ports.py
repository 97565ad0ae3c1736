"""Who listens on a TCP port, and the check that an install's ports all differ."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

from .errors import BarehubError
from .install_settings import flag_name


def listening_pid(port: int) -> Optional[int]:
    """PID of the process listening on TCP `port` (any address), or None if the port is free."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(pid_dir.name)
        except OSError:
            continue
    return -1  # listening, but the owner is not visible to us


def port_owner(port: int, allowed_pids: Sequence[int] = ()) -> Optional[str]:
    """Who listens on TCP `port` ("nginx (pid 12)"), or None if it is free or one of `allowed_pids` holds it."""
    pid = listening_pid(port)
    if pid is None or pid in allowed_pids:
        return None
    if pid < 0:
        return "another process"
    try:
        return f"{Path(f'/proc/{pid}/comm').read_text().strip()} (pid {pid})"
    except OSError:
        return f"pid {pid}"


def check_distinct_ports(ports: Mapping[str, int], https: bool) -> None:
    """traefik's public ports, the hub's own port and traefik's API port must all differ."""
    used = {name: port for name, port in ports.items() if (https or name != "https_port") and port}
    seen: Dict[int, str] = {}
    for name, port in used.items():
        if port in seen:
            raise BarehubError(f"{flag_name(seen[port])} and {flag_name(name)} are both {port}",
                               "give each its own port", exit_code=2)
        seen[port] = name
