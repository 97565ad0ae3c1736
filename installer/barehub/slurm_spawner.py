"""batchspawner's SlurmSpawner, telling the user what Slurm says while the job waits, and noticing at once
when the job ends before its server answers.

Upstream (batchspawner 1.3) shows "Pending in queue..." whatever the reason, and once the job is RUNNING it
waits for the server's port without looking at the job again: a job that died at start (a broken
~/.jupyter config, a node that failed it) left the user waiting for the whole start_timeout (300 s in
slurm.py) before a generic error. Here:
- one squeue call per poll asks for the state, the node, Slurm's reason and its expected start time
  (`-t all`, so that a job that already ended is still seen with its final state: slurmctld keeps it for
  MinJobAge, 300 s by default), and the spawn page shows them, refreshed as they change;
- a job Slurm will not start until an administrator acts (its partition down, a limit it exceeds) is
  cancelled and the user told at once, instead of waiting start_timeout for nothing;
- while the server starts (until its port takes connections: batchspawner-singleuser reports the port
  before the server runs), the job is polled too: when it ended, the user is told at once, with Slurm's
  state and reason and where the job's log is.
- the job's id is saved as soon as sbatch gives it: a hub restarted while the job waits in the queue (or its
  server starts) finds the job again and follows it to its server, instead of forgetting it (upstream saved
  the id only once the server answered: the job stayed in the queue, then ran a server nobody knew of);
- the server reports its port through PortReportHandler, which takes the port and nothing else (upstream's
  handler sets ANY attribute of the spawner the server's token names: exec_prefix, batch_script, req_options,
  so a user could have her next job submitted as root, or outside the profiles), and only a port of the site's
  range (`port_range`, which the job gets as BAREHUB_PORT_RANGE: one owner for both ends): a server's token
  could otherwise point the hub's route for /user/NAME/ at any port of the node, e.g. another user's listener;
- the server's port counts as up once it answers HTTP, not once it takes a TCP connection: the job holds its
  port, listening, from before it reports it (barehub.batch_singleuser), so the kernel takes connections before
  the server runs;
- the jobs' states come from one `squeue` call per poll interval for all the hub's jobs (barehub.shared_poll),
  run as the hub's own user, instead of a `sudo -u USER squeue` per job per poll: the same line per job (the
  same fields as the per-job QUERY), so everything above reads them as before. A job the shared call did not
  list (slurm.conf PrivateData=jobs hides other users' jobs from a hub user that is not a Slurm operator; a job
  Slurm has purged) is asked alone, the old way, and so is every job when the shared call fails for any reason
  but an unreachable controller (which is then every job's "unknown" state, as each job's own call said).
Everything else (submission, sudo, stop) is upstream's.
"""
from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

from batchspawner import SlurmSpawner as UpstreamSlurmSpawner
from batchspawner import api as upstream_api
from batchspawner.batchspawner import JobStatus
from jupyterhub.apihandlers import APIHandler, default_handlers
from tornado import web
from traitlets import Integer, TraitError, Unicode, default

from barehub import server_names
from barehub.batch_singleuser import ANY_PORT, parse_range
from barehub.server_end import RemembersEnd
from barehub.server_work import RemembersWork
from barehub.server_tokens import spawner_of_token
from barehub.shared_poll import PollsShared, SharedQuery
from barehub.utc_time import iso

# state, node | reason | start (expected while queued, actual once running) | end (the time limit's) | time limit
FIELDS = "%T %B|%r|%S|%e|%l"
QUERY = f"squeue -h -t all -j {{job_id}} -o '{FIELDS}'"
SHARED_QUERY_TIMEOUT = 60  # s; a shared squeue that takes longer is killed and each job asked alone
WALLTIME_WARNING = 600  # seconds before a job's time limit the user is warned (SlurmSpawner.walltime_warning)
# Slurm's reasons a job waits, as a user would say them (squeue(1), "JOB REASON CODES")
REASONS = {
    "Priority": "jobs with a higher priority are ahead of yours",
    "Resources": "the resources you asked for are in use; it starts when they are free",
    "ReqNodeNotAvail": "the nodes it needs are not available (down, drained or reserved)",
    "PartitionDown": "the partition is down",
    "PartitionInactive": "the partition is not taking jobs",
    "PartitionNodeLimit": "it asks for more nodes than the partition has",
    "QOSMaxJobsPerUserLimit": "you already run as many jobs as your QOS allows",
    "AssocMaxJobsLimit": "your account already runs as many jobs as it may",
    "BeginTime": "it may not start before its begin time",
    "Dependency": "it waits for another job",
    "JobHeldAdmin": "an administrator holds it",
    "JobHeldUser": "it is held",
}


# reasons a job waits for something only an administrator changes: the user is told at once, the job cancelled
WILL_NOT_START = {"PartitionDown", "PartitionInactive", "PartitionNodeLimit", "PartitionTimeLimit",
                  "InvalidAccount", "InvalidQOS", "QOSMaxWallDurationPerJobLimit", "AssocMaxWallDurationPerJobLimit",
                  "BadConstraints"}


def parse_status(line: str) -> dict[str, str]:
    """QUERY's line: state, node, reason, start, end, time limit ("" where Slurm has none; a line of an earlier
    release's query, saved with a running job, has no end and no limit)."""
    fields = ["state", "host", "reason", "start", "end", "limit"]
    if "|" not in line:  # an error instead (an id slurmctld no longer knows, a controller that does not answer)
        return dict.fromkeys(fields, "")
    head, *rest = line.strip().split("|")
    state, _, host = head.partition(" ")
    values = [state, host, *rest, "", "", "", ""][:len(fields)]
    status = dict(zip(fields, (value.strip() for value in values)))
    for key in ("start", "end", "limit"):
        if status[key] in ("N/A", "Unknown", "NONE", "UNLIMITED", "INVALID"):
            status[key] = ""
    return status


def slurm_time_utc(text: str) -> str:
    """Slurm's "2026-12-06T09:15:00" (this host's local time) as UTC ISO-8601 ("2026-12-06T08:15:00Z"); "" stays."""
    if not text:
        return ""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return ""
    return iso(moment.timestamp())  # a naive moment is local time


# Slurm's states of an ended job (squeue(1), "JOB STATE CODES"), as the sessions page says why the server ended
END_REASONS = {
    "TIMEOUT": "time limit reached",
    "CANCELLED": "cancelled",
    "COMPLETED": "the server exited",
    "FAILED": "the job failed (see its log)",
    "OUT_OF_MEMORY": "out of memory: the job reached its memory limit",
    "NODE_FAIL": "its node failed",
    "BOOT_FAIL": "its node failed to boot",
    "PREEMPTED": "preempted by a job of higher priority",
    "DEADLINE": "its deadline passed",
}


def describe_job_end(status: dict[str, str]) -> str:
    """Why a server's job ended, from the final squeue line ("" once Slurm no longer lists the job)."""
    state = status["state"]
    if not state:
        return "ended (Slurm no longer lists the job)"
    return END_REASONS.get(state, f"ended ({state})")


def describe_wait(status: dict[str, str]) -> str:
    """What the spawn page says while the job waits."""
    reason = status["reason"]
    why = REASONS.get(reason.split(",")[0], reason) if reason and reason != "None" else "Slurm is scheduling it"
    text = f"Waiting in Slurm's queue ({status['state']}, {reason or 'no reason given'}): {why}."
    if status["start"]:
        text += f" Slurm expects it to start at {status['start'].replace('T', ' ')}."
    return text


def describe_end(job_id: str, status: dict[str, str], log: str) -> str:
    """What the user is told when the job ended before the server answered."""
    state = status["state"] or "gone from the queue"
    reason = f", reason: {status['reason']}" if status["reason"] and status["reason"] != "None" else ""
    return f"Slurm job {job_id} ended before the server started ({state}{reason}). Its output is in {log}."


class SqueueFailed(Exception):
    """The shared squeue's error (its stderr, as the per-job call's error text was its job's status)."""


async def squeue_jobs(job_ids: list[str]) -> dict[str, str]:
    """QUERY's line for each of these jobs Slurm lists, from one squeue run as the hub's own user (ids Slurm does
    not know, or the hub's user may not see, are left out). squeue asks slurmctld once for all of them."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "squeue", "-h", "-t", "all", "-j", ",".join(job_ids), "-o", f"%i {FIELDS}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    except OSError as e:
        raise SqueueFailed(f"squeue: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), SHARED_QUERY_TIMEOUT)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()
        raise SqueueFailed(f"squeue did not answer within {SHARED_QUERY_TIMEOUT} s") from None
    if proc.returncode != 0:
        raise SqueueFailed(err.decode(errors="replace").strip() or f"squeue exited with {proc.returncode}")
    states = {}
    for line in out.decode(errors="replace").splitlines():
        job_id, _, status = line.strip().partition(" ")
        if job_id:
            states[job_id] = status
    return states


JOBS = SharedQuery(squeue_jobs)  # every SlurmSpawner of this hub asks this one


def check_reported_port(data, ports: range) -> int:
    """The port of a port report's body, which must be {"port": N}, N an integer (JSON's true is not: Python's bool
    is an int) in `ports`; a 400 saying what is accepted otherwise."""
    if not isinstance(data, dict) or set(data) != {"port"}:
        raise web.HTTPError(400, 'only {"port": N} is accepted')
    port = data["port"]
    if type(port) is not int or port not in ports:
        raise web.HTTPError(400, f"the port must be an integer in the servers' port range "
                                 f"{ports.start}-{ports.stop - 1}")
    return port


class PortReportHandler(APIHandler):
    """POST /hub/api/batchspawner {"port": N}: batchspawner-singleuser, in the job, tells the hub its server's port.

    Only the server's own token is taken (found by the spawner's token, or after a hub restart, when the spawner
    no longer holds it, by the note JupyterHub gives that token), and only a port of the spawner's range."""

    @web.authenticated
    def post(self):
        spawner = self.reporting_spawner()
        port = check_reported_port(self.get_json_body(), getattr(spawner, "ports", ANY_PORT))
        if spawner.port and spawner.port != port:  # once per start: a job's code cannot move its route later
            raise web.HTTPError(409, f"this server's port is {spawner.port} already")
        spawner.port = port
        spawner.save_state()  # a hub restarted before the server answers still knows where it listens
        self.set_status(201)
        self.finish(json.dumps({"message": f"port {port} recorded"}))

    def reporting_spawner(self):
        spawner = spawner_of_token(self)
        if spawner is None:
            raise web.HTTPError(403, "only a server's own token may report its port")
        return spawner


# in place of upstream's handler (registered when batchspawner is imported, before the hub makes its handlers)
default_handlers[:] = [(path, PortReportHandler if handler is upstream_api.BatchSpawnerAPIHandler else handler)
                       for path, handler in default_handlers]


class PortRange(Unicode):
    """"40000-40999", checked where the value is set (and by `barehub check`, which validates each value alone)."""

    def validate(self, obj, value):
        value = super().validate(obj, value)
        if value:
            try:
                parse_range(value)
            except ValueError as e:
                raise TraitError(f"port_range {e}") from None
        return value


class SlurmSpawner(PollsShared, RemembersWork, RemembersEnd, UpstreamSlurmSpawner):
    started_by_this_hub = False  # whether start() ran in this hub process (not so for a job found after a restart)
    said_asked_alone = ""  # the job whose being missing from the shared squeue was logged

    port_range = PortRange(
        help="""Ports users' servers may listen on, on the compute nodes ("40000-40999"): the job takes a free one
        (it gets this as BAREHUB_PORT_RANGE), and the hub accepts no other port from a job's report.
        Empty: any port from 1024 to 65535.""",
    ).tag(config=True)

    walltime_warning = Integer(
        WALLTIME_WARNING,
        help="""Seconds before a job's time limit the user is warned, in JupyterLab and on the sessions page, that
        the job (and her unsaved work) will end.""",
    ).tag(config=True)

    @default("port_range")
    def _port_range_default(self):
        """A fragment of before this trait set the range only in the job's environment: that range, then."""
        value = self.environment.get("BAREHUB_PORT_RANGE", "")
        return value if isinstance(value, str) else ""

    @property
    def ports(self) -> range:
        return parse_range(self.port_range) if self.port_range else ANY_PORT

    def get_env(self):
        """Upstream's, and the port range, from port_range (over anything `environment` says)."""
        env = super().get_env()
        if self.port_range:
            env["BAREHUB_PORT_RANGE"] = self.port_range
        return env

    @default("batch_query_cmd")
    def _batch_query_cmd_default(self):
        return QUERY

    @default("state_exechost_re")
    def _state_exechost_re_default(self):
        return r"^\S+\s+([^\s|]+)\|"

    def queue_status(self) -> dict[str, str]:
        return parse_status(self.job_status or "")

    async def query_job_status(self, max_age: float = 0.0) -> JobStatus:
        """The job's state from the shared squeue (an answer at most `max_age` s old; 0: one asked for now),
        or, where that did not list the job, from the job's own call, upstream's."""
        if not self.job_id or self.batch_query_cmd != QUERY:  # (a site's own query: asked its way)
            return await super().query_job_status()
        job_id = self.job_id
        answer = await JOBS.ask(job_id, max_age)
        if answer.error is not None and self.controller_unreachable(str(answer.error)):
            self.job_status = str(answer.error)  # what each job's own call would say
        elif answer.error is None and job_id in answer.states:
            self.job_status = answer.states[job_id]
        else:
            status = await super().query_job_status()
            if status != JobStatus.NOTFOUND and answer.error is None and self.said_asked_alone != job_id:
                self.said_asked_alone = job_id  # (once per job)
                self.log.warning(f"Slurm job {job_id} is not in the squeue the hub runs as its own user (slurm.conf "
                                 f"PrivateData=jobs?), but in its user's: it is asked alone at each poll")
            elif answer.error is not None:
                self.log.warning(f"the shared squeue failed ({answer.error}); Slurm job {job_id} asked alone")
            return status
        if self.state_isrunning():
            return JobStatus.RUNNING
        if self.state_ispending():
            return JobStatus.PENDING
        if self.state_isunknown():
            return JobStatus.UNKNOWN
        return JobStatus.NOTFOUND

    def controller_unreachable(self, text: str) -> bool:
        return bool(self.state_unknown_re and re.search(self.state_unknown_re, text))

    async def progress(self):
        """The spawn page's messages: Slurm's state and reason while the job waits, its node once it runs."""
        said = None
        while True:
            if self.state_ispending():
                message = describe_wait(self.queue_status())
            elif self.state_isrunning():
                message = f"Slurm job {self.job_id} is running on {self.queue_status()['host']}; the server starts."
            elif self.state_isunknown():
                message = "Slurm's controller does not answer; the job is kept and asked again."
            elif self.job_id:
                message = None  # it ended: start() says why
            else:
                message = "Submitting the job to Slurm."
            if message and message != said:
                said = message
                yield {"message": message}
            if self.state_isrunning():
                return
            await asyncio.sleep(1)

    async def start(self):
        """Upstream's start, with the job asked about while it waits and while its server starts."""
        self.started_by_this_hub = True
        self.ended = None
        self.ip = self.traits()["ip"].default_value
        self.port = self.traits()["port"].default_value
        if self.server:
            self.server.port = self.port
        await self.submit_batch_script()
        if not self.job_id:
            self.record_end("Slurm did not accept the job")
            raise RuntimeError("Slurm did not accept the job (no job id in sbatch's output)")
        self.save_state()
        try:
            await self.until_server_listens()
        except RuntimeError as e:  # the job ended, or will not start: the spawn page and the card say why
            self.record_end(str(e))
            raise
        self.db.commit()
        self.log.info(f"Notebook server job {self.job_id} started at {self.ip}:{self.port}")
        return self.ip, self.port

    def save_state(self) -> None:
        """The job id (and the port it reported) in the hub's database now, not once the server answers: a hub
        restarted meanwhile finds them."""
        self.orm_spawner.state = self.get_state()
        self.db.commit()

    def get_state(self):
        state = super().get_state()
        if self.job_id and self.port:
            state["port"] = self.port
        return state

    def load_state(self, state):
        super().load_state(state)
        self.port = state.get("port", 0) if self.job_id else 0

    async def until_server_listens(self) -> None:
        """Until the job runs and its server takes connections (self.ip, self.port); raises once the job ended."""
        while await self.job_alive() != JobStatus.RUNNING:  # (answers shared with the jobs starting meanwhile)
            await asyncio.sleep(self.startup_poll_interval)
        self.ip = self.state_gethost()
        while self.port == 0:  # batchspawner-singleuser reports its port to the hub's API first ...
            await asyncio.sleep(self.startup_poll_interval)
            await self.job_alive()
        while not await self.server_listens():  # ... then starts the server, which may still die
            await self.job_alive()
            await asyncio.sleep(self.startup_poll_interval)

    async def poll(self):
        """Upstream's, with why the job ended remembered; and after a hub restart, a job whose server had not
        started yet is followed again."""
        if self.job_id and self.server is not None and not self.server.port and not self.started_by_this_hub \
                and not self._stop_pending:
            return await self.resume()
        status = await self.query_job_status(self.poll_max_age())
        if status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return None
        self.record_end(describe_job_end(self.queue_status()))
        self.clear_state()
        return 1

    async def stop(self, now=False):
        """Upstream's (scancel, then up to 10 s for the job to end), the reason remembered; nothing to cancel once
        poll() found the job ended (upstream called scancel with no id)."""
        self.record_end("cancelled while queued" if self.state_ispending() else "stopped")
        if self.job_id:
            await super().stop(now)

    def clear_state(self):
        """The job is forgotten, but not where its output went (the sessions page shows it)."""
        if self.job_id and self.ended is not None:
            self.ended.setdefault("job_id", self.job_id)
            self.ended.setdefault("log", self.output_log(self.job_id))
        if self.job_id:
            JOBS.forget(self.job_id)
        super().clear_state()

    def get_req_subvars(self):
        """Upstream's, and the server's name for the batch script (`{{servername}}`, "" for the default server):
        a safe slug, all JupyterHub 6 lets a user create; a name an older hub let in (a newline, "--account=...")
        is not written into the script (the template is not escaped): "named" stands for it."""
        return {**super().get_req_subvars(),
                "servername": self.name if not self.name or server_names.is_safe(self.name) else "named"}

    def session_details(self) -> dict:
        """What the sessions page shows of the job beyond JupyterHub's model: Slurm's state and reason while it
        waits, its node, start and end (the time limit's) while it runs, and where its output goes."""
        details = {"kind": "slurm", "job_id": self.job_id, "warn_before_s": self.walltime_warning}
        if not self.job_id:
            return details
        queue = self.queue_status()
        pending = queue["state"] == "PENDING"
        return {**details, "job_state": queue["state"], "node": "" if pending else queue["host"],
                "reason": queue["reason"] if pending else "", "waiting": describe_wait(queue) if pending else "",
                "expected_start": slurm_time_utc(queue["start"]) if pending else "",
                "job_started": "" if pending else slurm_time_utc(queue["start"]),
                "ends_at": "" if pending else slurm_time_utc(queue["end"]),
                "time_limit": queue["limit"], "log": self.output_log(self.job_id)}

    async def resume(self):
        """The hub restarted while this job waited in the queue or its server started: follow it to its server
        (bounded by start_timeout), as start() would have. JupyterHub asks this at its start, in the background,
        and adds the server's route once it answers. None when the server runs, 1 when the job ended."""
        self.log.info(f"Slurm job {self.job_id} of {self.user.name} had not started its server when the hub "
                      f"restarted; following it again")
        try:
            await asyncio.wait_for(self.until_server_listens(), timeout=self.start_timeout)
        except (RuntimeError, asyncio.TimeoutError) as e:
            why = str(e) or f"no server within start_timeout ({self.start_timeout} s)"
            self.log.warning(f"Slurm job of {self.user.name}, followed after a hub restart: {why}")
            self.record_end(why)
            await self.until_no_stop_pending()
            return 1
        self.server.ip, self.server.port = self.ip, self.port
        self.db.commit()
        self.log.info(f"Notebook server job {self.job_id} started at {self.ip}:{self.port} (after a hub restart)")
        return None

    async def until_no_stop_pending(self, timeout: float = 60) -> None:
        """A user who pressed Stop meanwhile: her stop ends the job; JupyterHub must not stop it a second time."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._stop_pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.5)

    async def server_listens(self) -> bool:
        """Whether the server answers HTTP on its port. (Once start() returns, JupyterHub waits http_timeout
        for the server without asking the job: a server that died after reporting its port was found only
        then.) A TCP connection no longer tells: the job listens on its port from before it reports it, and the
        kernel takes connections there while the server still starts (they wait, and are answered once it runs).
        """
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.ip, self.port), timeout=2)
        except (OSError, asyncio.TimeoutError):
            return False
        try:
            if self.internal_ssl:  # a TLS server does not answer plain HTTP: a connection is all it is asked
                return True
            writer.write(f"HEAD / HTTP/1.0\r\nHost: {self.ip}:{self.port}\r\n\r\n".encode())
            return (await asyncio.wait_for(reader.readline(), timeout=2)).startswith(b"HTTP/")
        except (OSError, asyncio.TimeoutError):
            return False
        finally:
            writer.close()

    async def job_alive(self) -> JobStatus:
        """The job's state; raises, saying why, once it ended or when Slurm says it will not start."""
        status = await self.query_job_status(self.startup_poll_interval)
        job_id, queue = self.job_id, self.queue_status()
        if status == JobStatus.PENDING and queue["reason"] in WILL_NOT_START:
            await self.cancel_batch_job()
            self.clear_state()
            raise RuntimeError(f"Slurm will not start job {job_id}: {describe_wait(queue)} The job was cancelled; "
                               f"choose another profile, or ask the cluster's administrators.")
        if status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.UNKNOWN):
            return status
        self.log.warning(f"Slurm job {job_id} of {self.user.name} ended before its server started: {self.job_status}")
        self.clear_state()
        raise RuntimeError(describe_end(job_id, queue, self.output_log(job_id)))

    def output_log(self, job_id: str) -> str:
        """Where the job wrote its output (the batch script's --output, %j its id)."""
        for line in self.batch_script.splitlines():
            if line.startswith("#SBATCH --output="):
                path = line.split("=", 1)[1].replace("{{homedir}}", self.req_homedir)
                return path.replace("{{username}}", self.user.name).replace("%j", job_id)
        return f"slurm-{job_id}.out in {self.req_homedir}"
