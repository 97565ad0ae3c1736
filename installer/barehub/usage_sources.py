"""Where sessions come from: the local ledger (barehub.usage_ledger: systemd's accounting of each server unit)
and Slurm's accounting database (barehub.usage_slurm: sacct), asked once for a window and filtered by user or
group. One owner, so `barehub usage`, the hub's usage API, its metrics and the quotas read the same sessions."""
from __future__ import annotations

import grp
import pwd
import shutil
from dataclasses import dataclass, field

from barehub.base.errors import BarehubError
from barehub.base.paths import Paths
from barehub.usage import Session, Window

SOURCES = ("all", "local", "slurm")


@dataclass
class Gathered:
    sessions: list[Session]
    sources: list[str] = field(default_factory=list)  # "local: 3 sessions", "slurm: 2 jobs"


def slurm_here() -> bool:
    """Slurm's sessions are asked for when sacct is installed (a login node); a site without Slurm has none."""
    return shutil.which("sacct") is not None


def gather(paths: Paths, window: Window, now: float, source: str = "all", from_samples: bool = False) -> Gathered:
    """Every session overlapping the window from each source asked. A source that cannot answer (slurmdbd down)
    raises: usage that silently left it out would read as zero hours. With "all", a host where Slurm has no
    accounting (off, or no slurm.conf) counts local servers only, and a --hub-user hub (which cannot read root's
    ledger, and runs no local servers) Slurm jobs only; each says so in the sources. `from_samples`: running local
    sessions as of the sampler's last pass (the hub's minutely book; usage_ledger.sessions says why)."""
    if source not in SOURCES:
        raise BarehubError(f"--source {source!r} is not one of {', '.join(SOURCES)}")
    from barehub import usage_ledger, usage_slurm

    gathered = Gathered([])
    if source in ("all", "local"):
        ask(gathered, lambda: usage_ledger.sessions(paths, window, now, from_samples=from_samples), usage_ledger.LedgerUnreadable,
            source == "local", "local servers (systemd): {} session(s)", "local servers: none counted ({})")
    if source == "slurm" or (source == "all" and slurm_here()):
        ask(gathered, lambda: usage_slurm.sessions(window, now), usage_slurm.SlurmAccountingAbsent,
            source == "slurm", "Slurm jobs (sacct): {} job(s)", "Slurm jobs: none counted here ({})")
    return gathered


def ask(gathered: Gathered, sessions, absent: type[BarehubError], asked_alone: bool, found: str,
        none: str) -> None:
    """One source's sessions into `gathered`; a source that is absent here (`absent`) is said, not counted, unless
    it was the one asked for."""
    try:
        got = sessions()
    except absent as e:
        if asked_alone:
            raise
        gathered.sources.append(none.format(e.message))
        return
    gathered.sessions += got
    gathered.sources.append(found.format(len(got)))


def known_group(name: str) -> str:
    try:
        grp.getgrnam(name)
    except KeyError:
        raise BarehubError(f"--group {name!r}: no such unix group here (getent group {name})",
                           "give a group name as `id USER` shows it") from None
    return name


def known_user(name: str) -> str:
    """A user that has no account any more still has her past usage: only a name no session has is refused
    (by the caller, after gathering); here only the shape is checked."""
    if not name or "/" in name:
        raise BarehubError(f"--user {name!r} is not a user name")
    return name


def of_user(sessions: list[Session], user: str) -> list[Session]:
    return [s for s in sessions if s.user == user]


def of_group(sessions: list[Session], group: str) -> list[Session]:
    """The sessions charged to the group: those whose primary group it was (as Slurm charges a job's gid)."""
    return [s for s in sessions if s.group == group]


def account_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False
