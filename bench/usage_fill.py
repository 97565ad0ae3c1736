"""Inside the bench's container: N ended sessions of 200 users in 10 groups over the last 60 days, either into
barehub's usage ledger (as each server unit's stop writes them) or into the journal as systemd's own "Consumed ...
CPU time" messages of the same units (what an admin scripts without barehub). Run with the install's python:
  PREFIX/conda/bin/python /mnt/bench/usage_fill.py ledger|journal N
"""
from __future__ import annotations

import random
import socket
import sys
import time

from barehub.base.paths import Paths
from barehub.usage import Session
from barehub.usage_ledger import Ledger

RESOURCE_MESSAGE_ID = "ae8f7b866b0347b9af31fe1c80b127c0"  # systemd's SD_MESSAGE_UNIT_RESOURCES


def sessions(n: int, now: float) -> list[Session]:
    rng = random.Random(1)
    out = []
    for i in range(n):
        user = f"user{i % 200:03d}"
        start = now - rng.uniform(3600, 60 * 86400)
        hours = rng.uniform(0.1, 8)
        end = min(start + hours * 3600, now - 60)
        out.append(Session("local", f"jupyter-{user}-singleuser.service@{i:032x}", user, f"group{i % 200 % 10}",
                           rng.choice(["", "small", "large"]), start, end, rng.uniform(0, hours) * 3600, 0,
                           rng.randrange(1, 8) * 2 ** 30, rng.randrange(1, 4) * 2 ** 30))
    return out


def to_ledger(found: list[Session]) -> None:
    ledger = Ledger(Paths.from_prefix("/opt/barehub"))
    ledger.ensure_dirs()
    for session in found:
        ledger.append(session)


def to_journal(found: list[Session]) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    for session in found:
        unit = session.id.split("@")[0]
        fields = {"MESSAGE_ID": RESOURCE_MESSAGE_ID, "PRIORITY": "6", "UNIT": unit,
                  "MESSAGE": f"{unit}: Consumed {session.cpu_s:.3f}s CPU time.",
                  "CPU_USAGE_NSEC": str(int(session.cpu_s * 1e9))}
        sock.sendto("".join(f"{k}={v}\n" for k, v in fields.items()).encode(), "/run/systemd/journal/socket")


if __name__ == "__main__":
    where, n = sys.argv[1], int(sys.argv[2])
    made = sessions(n, time.time())
    (to_ledger if where == "ledger" else to_journal)(made)
    print(len(made))
