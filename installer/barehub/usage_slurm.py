"""Slurm servers' usage from Slurm's accounting database: one `sacct` call over the window, the jobs barehub
submitted (named jupyterhub-USER[-SERVER] by slurm.py's batch script) as `usage.Session`s.

Why sacct and not the hub's own records: a job's CPU time, memory and GPUs are measured by Slurm on the compute
node (jobacct_gather) and kept by slurmdbd, also for jobs that ended while the hub was down. One call: sacct's
own manual asks programs not to loop over it (each call is an RPC to slurmdbd); on the test cluster it takes
about 0.2 s (5 calls, 12 lines each, Slurm 22.05.8), and `barehub usage --source slurm --json` end to end
0.37 to 0.45 s (3 runs of the cluster's module).

What the figures are (measured on the test cluster, Slurm 22.05.8, jobacct_gather/linux, samples every 2 s):
- wall time: Start to End (a running job's End is "Unknown": up to now);
- CPU time: the job's TotalCPU (user + system of all its steps). While a job runs, sacct says 00:00:00: Slurm
  writes it when the job ends, so a running job counts 0 CPU hours and says so in its note;
- GPUs: AllocTRES's gres/gpu=N (slurm.conf needs AccountingStorageTRES=gres/gpu), GPU hours = N x wall time;
- peak memory: the largest MaxRSS of the job's steps (a server runs in the batch step);
- average memory: none. Slurm keeps no time average: AveRSS is the average over a step's tasks of each task's
  peak. Measured: a job holding 400 MB for 6 s, then 10 MB for 8 s, shows AveRSS = MaxRSS = 419228K. Calling
  that an average would overstate GiB-hours, so Slurm sessions have mem_avg_bytes None (no GiB-hours);
- profile: the job's Comment. slurm.py's batch script writes the profile's label there (#SBATCH --comment) and
  slurm.conf's AccountingStoreFlags=job_comment keeps it in the database. A user can change her own job's
  comment (scontrol update job=ID comment=..., tried on the test cluster): good enough to report by, not to
  enforce anything by.
"""
from __future__ import annotations

import os
import re
import subprocess
from typing import Callable

from barehub.base.errors import BarehubError
from barehub.usage import Session, Window
from barehub.utc_time import epoch

PREFIX = "jupyterhub-"  # slurm.py's #SBATCH --job-name=jupyterhub-{{username}}[-{{servername}}]
FIELDS = ("JobIDRaw", "JobName", "User", "Group", "Start", "End", "ElapsedRaw", "TotalCPU", "AllocTRES", "MaxRSS",
          "AveRSS", "State", "Comment")  # Comment last: the user's own text may hold the separator "|"
TIMEOUT = 60.0  # seconds; a healthy slurmdbd answers in 0.2 s, an unreachable host's refusal is immediate
UNREACHABLE = ("problem talking to the database", "connection refused", "persistent connection",
               "unable to contact", "timed out", "no route to host", "name or service not known")
DISABLED = "accounting storage is disabled"
HINT = ("is slurmdbd running and reachable from here? `systemctl status slurmdbd` on its host, and slurm.conf's "
        "AccountingStorageType=accounting_storage/slurmdbd and AccountingStorageHost (docs/usage.md); meanwhile "
        "local servers' usage: barehub usage --source local")
NO_CONFIG = "could not establish a configuration source"  # no slurm.conf here, and none by DNS (configless)
Run = Callable[..., subprocess.CompletedProcess]


class SlurmAccountingAbsent(BarehubError):
    """This host has no Slurm accounting to ask (accounting off, or no Slurm configuration at all): with --source
    all, a site without Slurm accounting is a site whose sessions are all local, not an error
    (barehub.usage_sources); asked for Slurm alone, it is one."""


def sessions(window: Window, now: float, run: Run | None = None, prefix: str = PREFIX, sacct: str = "sacct",
             timeout: float = TIMEOUT) -> list[Session]:
    """Every barehub job that overlaps the window (sacct -S/-E without --state selects the jobs eligible before
    the window's end that had not ended before its start). Raises BarehubError when sacct is missing, Slurm's
    accounting is off or slurmdbd does not answer: never an empty list then (zeros would read as "nobody used
    anything")."""
    return parse(query(window, run, sacct, timeout), prefix, now)


def sacct_argv(window: Window, sacct: str = "sacct") -> list[str]:
    return [sacct, "--allusers", "--parsable2", "--noheader", "--starttime", slurm_moment(window.since),
            "--endtime", slurm_moment(window.until), "--format=" + ",".join(FIELDS)]


def slurm_moment(when: float) -> str:
    """A moment as sacct reads it, in UTC: sacct runs with TZ=UTC, so it reads and writes UTC."""
    from datetime import datetime, timezone
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _run(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout, cwd="/")


def query(window: Window, run: Run | None = None, sacct: str = "sacct", timeout: float = TIMEOUT) -> str:
    """sacct's output over the window. SLURM_CONF comes from the environment (slurm.py sets it for the hub);
    TZ=UTC and SLURM_TIME_FORMAT=standard make its times ISO in UTC whatever the host's zone."""
    argv = sacct_argv(window, sacct)
    env = {**os.environ, "TZ": "UTC", "SLURM_TIME_FORMAT": "standard"}
    try:
        proc = (run or _run)(argv, env=env, timeout=timeout)
    except FileNotFoundError:
        raise BarehubError(f"sacct is not installed here ({sacct} not found): Slurm servers' usage comes from "
                           "Slurm's accounting database through sacct",
                           hint="run barehub usage on a Slurm submit host (the hub's), or install Slurm's client "
                                "commands (Debian: slurm-client); local servers' usage: barehub usage --source "
                                "local") from None
    except subprocess.TimeoutExpired:
        raise BarehubError(f"Slurm's accounting (slurmdbd) did not answer within {timeout:.0f} s (sacct)",
                           hint=HINT) from None
    said = " ".join(line.strip() for line in (proc.stderr or "").splitlines() if line.strip())
    if NO_CONFIG in said.lower():
        raise SlurmAccountingAbsent(f"Slurm is not configured on this host: sacct says {said!r}",
                                    hint="run barehub usage on a Slurm submit host (the hub's), with its slurm.conf "
                                         "(SLURM_CONF); local servers' usage: barehub usage --source local")
    if DISABLED in said.lower():
        raise SlurmAccountingAbsent(f"Slurm's accounting is off on this cluster: sacct says {said!r}",
                           hint="Slurm servers' usage needs slurmdbd: slurm.conf's AccountingStorageType="
                                "accounting_storage/slurmdbd (the lines a site needs: docs/usage.md); local servers' "
                                "usage: barehub usage --source local")
    if proc.returncode != 0 or any(words in said.lower() for words in UNREACHABLE):
        raise BarehubError(f"Slurm's accounting (slurmdbd) is unreachable or off: sacct exited {proc.returncode}"
                           + (f" and says {said!r}" if said else ""), hint=HINT)
    return proc.stdout


def parse(text: str, prefix: str = PREFIX, now: float | None = None) -> list[Session]:
    """sacct's --parsable2 lines (FIELDS) as the sessions of the jobs named prefix...; steps (ID.batch, ID.0)
    give their memory to their job. A job that never started (Start "Unknown" or "None") is no session."""
    jobs: dict[str, dict] = {}
    for line in text.splitlines():
        cells = line.split("|", len(FIELDS) - 1)
        if len(cells) != len(FIELDS) or not re.fullmatch(r"\d+(_\d+)?(\.[\w+-]+)?", cells[0]):
            continue  # a comment's own line break (a user's scontrol update), not a record
        row = dict(zip(FIELDS, cells))
        job_id, _, step = row["JobIDRaw"].partition(".")
        if not step:
            jobs[job_id] = {"row": row, "steps": []}
        elif job_id in jobs:
            jobs[job_id]["steps"].append(row)
    found = []
    for job_id, job in jobs.items():
        row = job["row"]
        if not row["JobName"].startswith(prefix):
            continue
        start, end = slurm_time(row["Start"]), slurm_time(row["End"])
        if start is None:
            continue
        peaks = [memory(step["MaxRSS"]) for step in job["steps"]]
        peaks = [peak for peak in peaks if peak is not None]
        found.append(Session(
            source="slurm", id=job_id, user=row["User"], group=row["Group"], profile=row["Comment"],
            start=start, end=end, cpu_s=cpu_seconds(row["TotalCPU"]), gpus=gpus(row["AllocTRES"]),
            mem_peak_bytes=max(peaks) if peaks else None, mem_avg_bytes=None,
            server=server_of(row["JobName"], row["User"], prefix),
            note="running: Slurm records its CPU time and memory when it ends" if end is None else ""))
    return found


def slurm_time(text: str) -> float | None:
    """sacct's Start/End (ISO, UTC under TZ=UTC) as epoch seconds; None for "Unknown" (running), "None" (never
    started) or nothing."""
    return None if text in ("", "Unknown", "None") else epoch(text)


def cpu_seconds(text: str) -> float:
    """TotalCPU's [DD-][HH:]MM:SS[.mmm]: "00:08.261", "01:02:03", "1-02:03:04"."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)", text.strip())
    if not match:
        if text.strip() in ("", "INVALID"):
            return 0.0
        raise BarehubError(f"sacct's TotalCPU {text!r} is not [DD-][HH:]MM:SS[.mmm]")
    days, hours, minutes, seconds = match.groups()
    return int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)


UNITS = {"": 1, "K": 1024, "M": 1024 ** 2, "G": 1024 ** 3, "T": 1024 ** 4, "P": 1024 ** 5}


def memory(text: str) -> int | None:
    """MaxRSS/AveRSS ("316724K", "1.50G", "0") as bytes; None when sacct has none (a running step)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGTP]?)", text.strip())
    return round(float(match.group(1)) * UNITS[match.group(2)]) if match else None


def gpus(alloc_tres: str) -> int:
    """AllocTRES's gres/gpu=N ("billing=2,cpu=2,gres/gpu=1,mem=1G,node=1"); typed counts (gres/gpu:a100=1) are
    part of it and not added again."""
    for item in alloc_tres.split(","):
        key, _, value = item.partition("=")
        if key == "gres/gpu" and value.isdigit():
            return int(value)
    return 0


def server_of(job_name: str, user: str, prefix: str = PREFIX) -> str:
    """The server's name in jupyterhub-USER-SERVER ("" for her default server, jupyterhub-USER)."""
    own = prefix + user
    return job_name[len(own) + 1:] if job_name.startswith(own + "-") else ""
