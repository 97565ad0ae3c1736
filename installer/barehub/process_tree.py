"""A unit's main process and what it started, found by parentage, to be ended after the unit's stop.

Why. The upgrade from a release whose user servers were the hub's own children (KillMode=process) stops the old
hub with its whole cgroup (Systemctl.stop_all). In 2 of 3 full test runs one such server outlived that stop and
the SIGKILL of the cgroup after it, with the stop's two waits (2 x 10 s) spent; it was still serving, unknown to the
new hub, a minute later. It never happened with the module run alone, under load either. Whatever systemd's
accounting of that process was, it was the old hub's child when the upgrade began: taken here by parentage
before the stop, and ended after it if still there, it cannot outlive the upgrade. psutil names each process by
its PID and start time, so a PID reused meanwhile is never signalled.
"""
from __future__ import annotations

import logging

import psutil

log = logging.getLogger("barehub")


def tree_of(pid: int) -> list[psutil.Process]:
    """The process `pid` and all its descendants, as they are now; [] when there is no such process (pid 0: a unit
    with no main process)."""
    if pid <= 0:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def end_left_over(processes: list[psutil.Process], what: str, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` s, those of `processes` still running. Each one is logged: a process
    left by a unit's stop is worth a line in the journal."""
    alive = [p for p in processes if p.is_running()]  # same PID and start time: the very process taken
    if not alive:
        return
    log.warning("%s left %d process(es) running: %s; ending them", what, len(alive),
                ", ".join(f"{p.pid} ({describe(p)})" for p in alive))
    for sig in ("terminate", "kill"):
        for process in alive:
            try:
                getattr(process, sig)()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(alive, timeout=grace)
        if not alive:
            break
    for process in alive:
        log.error("%s: process %d did not end after SIGKILL", what, process.pid)


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.username()}: {' '.join(process.cmdline())[:120]}"
    except psutil.Error:
        return "gone"
