"""`barehub doctor slurm`: the hops a user's server job needs on a Slurm cluster, each tried for real with a tiny
job submitted as a given user, each with a verdict.

    sbatch accepts the job -> it starts on a node -> that node reaches the hub's API (hub_connect_url) ->
    this host (where traefik runs) reaches the node in the servers' port range

The site's values come from the hub's own config (the fragments, loaded as `barehub check` loads them); the job
is barehub.doctor_probe, run by the same python the servers' jobs run. Waits are bounded (--timeout). What the
job wrote is the user's: read as the user, shown with its non-printable characters replaced.
"""
from __future__ import annotations

import pwd
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from barehub.base.paths import Paths
from barehub.base import machine
from barehub.base.errors import BarehubError

POLL = 0.5  # seconds between looks at the queue and the job's output


@dataclass(frozen=True)
class Hop:
    name: str
    ok: bool
    detail: str
    hint: str = ""


@dataclass(frozen=True)
class SlurmSite:
    """What the hub's config says a server job gets."""
    python: str  # the hub env's python, as the jobs run it
    hub_api: str  # the hub API's URL as servers on the nodes use it
    hub_port: int
    port_range: str


@dataclass
class Job:
    user: str
    home: str
    id: str = ""
    node: str = ""

    @property
    def log(self) -> str:
        return f"{self.home}/.barehub-doctor-{self.id}.log"


def run(user: str, paths: Paths, partition: str = "", timeout: float = 120) -> list[Hop]:
    """Every hop, in order, until one fails (the later ones cannot be tried then)."""
    site = site_from_config(paths)
    job = Job(user, home_of(user))
    hops = [submit(job, site, partition, timeout)]
    try:
        if hops[-1].ok:
            hops.append(wait_started(job, timeout))
        if hops[-1].ok:
            findings = read_findings(job, timeout)
            hops.append(node_to_hub_api(job, site, findings))
            hops.append(host_to_node_port(job, site, findings))
    finally:
        clean_up(job)
    return hops


# --- the steps
def site_from_config(paths: Paths) -> SlurmSite:
    from urllib.parse import urlparse

    from barehub.validation import load_config

    config = load_config(paths)  # runs the fragments, as the hub does: slurm.py sets SLURM_CONF here too
    spawner_class = str(config.get("JupyterHub", {}).get("spawner_class", ""))
    if "Slurm" not in spawner_class:
        raise BarehubError(f"the hub does not start servers as Slurm jobs (spawner_class: {spawner_class or 'default'})",
                           f"put the Slurm fragment (slurm.py) in {paths.config_d}")
    spawner: dict = {}
    for section in ("Spawner", "BatchSpawnerBase", "SlurmSpawner"):
        spawner.update(config.get(section, {}))
    connect_url = spawner.get("hub_connect_url")
    if not connect_url:
        raise BarehubError("the Slurm fragment sets no hub_connect_url: servers on the nodes would ask the hub's "
                           "own loopback address", "set c.SlurmSpawner.hub_connect_url (slurm.py's HUB_URL)")
    base_url = str(config.get("JupyterHub", {}).get("base_url", "/")).strip("/")
    hub_api = connect_url.rstrip("/") + (f"/{base_url}" if base_url else "") + "/hub/api"
    url = urlparse(connect_url)
    command = shlex.split(str(spawner.get("batchspawner_singleuser_cmd", "")))
    python = command[0] if command and "python" in Path(command[0]).name else sys.executable
    # SlurmSpawner.port_range, or (a fragment of before that trait) the range given the jobs' environment
    port_range = spawner.get("port_range") or dict(spawner.get("environment", {})).get("BAREHUB_PORT_RANGE")
    return SlurmSite(python=python, hub_api=hub_api,
                     hub_port=url.port or (443 if url.scheme == "https" else 80),
                     port_range=str(port_range or "1024-65535"))


def home_of(user: str) -> str:
    try:
        return pwd.getpwnam(user).pw_dir
    except KeyError:
        raise BarehubError(f"no user {user!r} on this host", "give --user a user who may start a server") from None


def command(argv: list[str], stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, input=stdin, text=True, capture_output=True, timeout=timeout, cwd="/")
    except subprocess.TimeoutExpired:
        raise BarehubError(f"{shlex.join(argv)} did not finish within {timeout:.0f} s",
                           "is slurmctld answering (scontrol ping)?") from None


def as_user(job: Job, line: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return command(["runuser", "-u", job.user, "--", "/bin/sh", "-c", line], stdin)


def printable(text: str) -> str:
    """What the user's job wrote, safe to show on root's terminal (no escape sequences)."""
    return "".join(ch if ch.isprintable() else "?" for ch in text)


def submit(job: Job, site: SlurmSite, partition: str, timeout: float) -> Hop:
    script = (f"#!/bin/bash\nexec {shlex.quote(site.python)} -m barehub.doctor_probe --hub-api "
              f"{shlex.quote(site.hub_api)} --port-range {shlex.quote(site.port_range)} --wait {int(timeout)}\n")
    options = f"--partition={shlex.quote(partition)} " if partition else ""
    proc = as_user(job, f"sbatch --parsable {options}--job-name=barehub-doctor --time=5 --mem=100M "
                        f"--cpus-per-task=1 --chdir={shlex.quote(job.home)} "
                        f"--output={shlex.quote(job.home)}/.barehub-doctor-%j.log", stdin=script)
    job.id = proc.stdout.strip().split(";")[0] if proc.returncode == 0 else ""
    if not job.id:
        return Hop("sbatch", False, f"sbatch refused the test job: {proc.stderr.strip() or proc.stdout.strip()}",
                   "the same submission a server's job makes fails: see sbatch's message (partition, limits, munge)")
    where = f" in partition {partition}" if partition else ""
    return Hop("sbatch", True, f"sbatch accepted the test job as {job.user}: job {job.id}{where}")


def queue_state(job_id: str) -> tuple[str, str, str]:
    """state, node, reason of a job ("" when slurmctld no longer knows it)."""
    proc = command(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T|%N|%r"], timeout=30)
    fields = proc.stdout.strip().split("|") if proc.returncode == 0 else []
    return tuple(fields) if len(fields) == 3 else ("", "", "")  # type: ignore[return-value]


def wait_started(job: Job, timeout: float) -> Hop:
    start = time.monotonic()
    state = reason = ""
    while time.monotonic() - start < timeout:
        state, node, reason = queue_state(job.id)
        if state in ("RUNNING", "COMPLETING", "COMPLETED") and node:
            job.node = node
            return Hop("start", True, f"job {job.id} started on {node} after {time.monotonic() - start:.1f} s")
        if state not in ("PENDING", "CONFIGURING", ""):
            return Hop("start", False, f"job {job.id} ended before it ran ({state}, reason: {reason})",
                       "see slurmctld's log for the job; the node may be down or drained")
        time.sleep(POLL)
    return Hop("start", False, f"job {job.id} did not start within {timeout:.0f} s ({state or 'unknown'}, "
                               f"reason: {reason or 'none'})", "wait for a free node, or give --partition")


def read_findings(job: Job, timeout: float) -> dict[str, str]:
    """The probe's lines (first word -> the rest), read as the user (the file is hers), until it listens or ends.
    (An empty queue answer is slurmctld not answering for a moment: an ended job stays listed for MinJobAge.)"""
    findings: dict[str, str] = {}
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        lines = [printable(line) for line in
                 as_user(job, f"head -c 100000 {shlex.quote(job.log)} 2>/dev/null").stdout.splitlines()]
        out = "\n".join(lines)
        findings = {line.split(" ", 1)[0]: line.split(" ", 1)[-1] for line in lines if line.strip()}
        if "listening" in findings or "listen" in findings or queue_state(job.id)[0] not in ("RUNNING", "COMPLETING",
                                                                                            ""):
            findings["output"] = out[-2000:]
            return findings
        time.sleep(POLL)
    findings["output"] = "(nothing within the timeout)"
    return findings


def node_to_hub_api(job: Job, site: SlurmSite, findings: dict[str, str]) -> Hop:
    answer = findings.get("hub-api", "")
    name = f"{job.node} -> hub API ({site.hub_api})"
    if answer.startswith("ok "):
        _, status, version = (answer.split() + ["?", "?"])[:3]
        return Hop("hub-api", True, f"{name}: answered {status}, JupyterHub {version}")
    if not answer:
        return Hop("hub-api", False, f"{name}: the test job ran no check; its output: {findings['output']!r}",
                   f"the hub env ({site.python}) must exist at the same path on the nodes (a shared filesystem)")
    return Hop("hub-api", False, f"{name}: {answer.removeprefix('fail ')}",
               f"servers report to the hub there: allow TCP {site.hub_port} from the compute nodes to this host "
               f"(e.g. nft add rule inet filter input ip saddr <nodes' network> tcp dport {site.hub_port} accept), "
               f"check hub_connect_url (slurm.py's HUB_URL) resolves on the nodes, and that they trust its certificate")


def host_to_node_port(job: Job, site: SlurmSite, findings: dict[str, str]) -> Hop:
    name = f"this host -> {job.node or 'the node'} in the servers' port range {site.port_range}"
    listening = findings.get("listening", "")
    if not listening.isdigit():
        why = findings.get("listen") or "the test job did not listen"
        return Hop("proxy", False, f"{name}: {why}", "see the test job's output above")
    try:
        with socket.create_connection((job.node, int(listening)), timeout=10) as conn:
            conn.settimeout(10)
            banner = conn.recv(64)
    except OSError as e:
        banner, error = b"", e
    else:
        error = None
    if banner.startswith(b"barehub-doctor"):
        return Hop("proxy", True, f"{name}: connected to {job.node}:{listening}")
    return Hop("proxy", False, f"{name}: {job.node}:{listening}: {error or 'no answer from the test job'}",
               f"traefik on this host forwards users to their servers there: allow TCP {site.port_range} from this "
               f"host to the compute nodes")


def clean_up(job: Job) -> None:
    if job.id:
        command(["scancel", job.id], timeout=30)
        as_user(job, f"rm -f {shlex.quote(job.log)}")


def require_root() -> None:
    machine.require_root("barehub doctor slurm", "submits its test job as the user you name: it needs root")
