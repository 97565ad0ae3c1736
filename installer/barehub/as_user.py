"""Work that root does on files another user owns, done as that user (a forked child that drops to her uid).

For what root cannot do through one descriptor (barehub.base.records.open_no_follow): SQLite opens the database by path,
with its journal beside it. As root, sqlite3.connect(state/jupyterhub.sqlite) followed a link the hub user
planted there: reproduced, `barehub rollback` overwrote a root-only SQLite file elsewhere, and a backup read
one. As the hub user, a link reaches only what she could reach herself.
"""
from __future__ import annotations

import os
import pwd
import select
import signal
import time
from typing import Any, Callable

from barehub.base.errors import BarehubError


TIMEOUT_S = 300  # a database copy takes seconds; a child the user stopped (SIGSTOP) or that waits on a FIFO is not waited for longer


def run_as(user: str, work: Callable[..., bytes | None], *args: Any, timeout: float = TIMEOUT_S) -> bytes:
    """`work(*args)` in a child running as `user` (its primary group, no others); returns the bytes it
    returned (b"" for None), only as data: nothing the child sends is ever executed or unpickled by root.

    The child keeps no descriptor of root's but its answer pipe, and ends itself after `timeout` (SIGALRM);
    root waits no longer either, then kills it. An exception in the child is raised here as a BarehubError
    naming the user. For root, the child keeps root's identity: the directory is then root's own and nobody
    else can plant anything in it."""
    account = pwd.getpwnam(user)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        status = 1
        try:
            signal.alarm(int(timeout) + 1)
            os.closerange(0, write_end)
            os.closerange(write_end + 1, os.sysconf("SC_OPEN_MAX"))
            if account.pw_uid != os.geteuid():
                os.setgroups([])
                os.setresgid(account.pw_gid, account.pw_gid, account.pw_gid)
                os.setresuid(account.pw_uid, account.pw_uid, account.pw_uid)  # also makes it non-dumpable
            try:
                answer = b"+" + (work(*args) or b"")
            except Exception as e:  # noqa: BLE001 - carried to the parent, which says what failed
                answer = b"-" + f"{type(e).__name__}: {e}".encode(errors="replace")
            with os.fdopen(write_end, "wb") as out:
                out.write(answer)
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    try:
        data = read_until(read_end, time.monotonic() + timeout)
    finally:
        os.close(read_end)
        if data is None:
            os.kill(pid, signal.SIGKILL)
        _, wait_status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(wait_status)
    if data is None:
        raise BarehubError(f"the work done as {user} did not finish within {timeout:.0f} s (stopped)")
    if code != 0 or not data:
        raise BarehubError(f"the work done as {user} did not finish (exit {code})")
    if data[:1] != b"+":
        raise BarehubError(f"as {user}: {data[1:].decode(errors='replace')}")
    return data[1:]


def read_until(fd: int, deadline: float) -> bytes | None:
    """All the child writes, until it closes the pipe; None when the deadline passes first."""
    chunks = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            return None
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
