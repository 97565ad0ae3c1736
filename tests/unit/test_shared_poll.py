"""One call answers many servers' polls (barehub.shared_poll), and what the Slurm and the local spawner make of
its answers: N polls -> 1 squeue / 1 systemctl; a stale answer refreshed; a job the shared call did not list asked
alone; errors. A `squeue` script stands in for Slurm here (the real one: tests/integration/test_slurm_cluster.py),
RecordingSystemctl for systemd (the real one: tests/integration/test_culling.py)."""
from __future__ import annotations

import asyncio
import getpass
import json
import logging
import os
import time
import types

import pytest
from traitlets.config import Config

from barehub import local_spawner, shared_poll, slurm_spawner
from barehub.shared_poll import PERIODIC, PollsShared, SharedQuery, cadence
from batchspawner.batchspawner import JobStatus
from tests.unit.conftest import RecordingSystemctl


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def recording_fetch(calls: list, states=None, error=None, delay=0.0):
    async def fetch(keys):
        calls.append(list(keys))
        await asyncio.sleep(delay)
        if error:
            raise error
        return {key: (states or {}).get(key, f"state of {key}") for key in keys if key != "hidden"}
    return fetch


def test_n_asks_at_once_make_one_call_naming_every_key():
    async def run():
        calls = []
        query = SharedQuery(recording_fetch(calls))
        answers = await asyncio.gather(*(query.ask(f"job{i}", 0) for i in range(200)))
        return calls, answers

    calls, answers = asyncio.run(run())
    assert len(calls) == 1 and sorted(calls[0]) == sorted(f"job{i}" for i in range(200))
    assert {a.states["job7"] for a in answers} == {"state of job7"}


def test_an_answer_younger_than_max_age_is_reused_an_older_one_refreshed():
    async def run():
        calls, clock = [], Clock()
        query = SharedQuery(recording_fetch(calls), clock=clock)
        await query.ask("a", 15)
        clock.now += 14.9
        await query.ask("a", 15)  # reused
        await query.ask("b", 15)  # a key the last call did not name: a call
        clock.now += 15
        await query.ask("a", 15)  # stale: refreshed
        return calls

    assert asyncio.run(run()) == [["a"], ["a", "b"], ["a", "b"]]


def test_an_ask_with_max_age_0_gets_a_call_that_started_after_it_asked():
    """A start or a stop must not take a state from before it (a unit restarted under the same name)."""
    async def run():
        calls = []
        query = SharedQuery(recording_fetch(calls, delay=0.05))
        first = asyncio.ensure_future(query.ask("a", 0))
        await asyncio.sleep(0.01)  # the first call runs
        second = await query.ask("a", 0)
        return calls, (await first).started < second.started

    calls, later = asyncio.run(run())
    assert calls == [["a"], ["a"]] and later


def test_asks_while_a_call_runs_that_accept_its_age_share_it():
    async def run():
        calls = []
        query = SharedQuery(recording_fetch(calls, delay=0.05))
        first = asyncio.ensure_future(query.ask("a", 0))
        await asyncio.sleep(0.01)
        await asyncio.gather(first, *(query.ask("a", 10) for _ in range(50)))
        return calls

    assert asyncio.run(run()) == [["a"]]


def test_a_failed_call_is_one_answer_with_its_error_for_every_ask():
    async def run():
        calls = []
        query = SharedQuery(recording_fetch(calls, error=RuntimeError("down")))
        return calls, await asyncio.gather(*(query.ask(k, 0) for k in "abc"))

    calls, answers = asyncio.run(run())
    assert len(calls) == 1 and {str(a.error) for a in answers} == {"down"}


def test_a_forgotten_key_is_no_longer_asked_about():
    async def run():
        calls = []
        query = SharedQuery(recording_fetch(calls))
        await asyncio.gather(query.ask("a", 0), query.ask("b", 0))
        query.forget("a")
        await query.ask("b", 0)
        return calls

    assert asyncio.run(run()) == [["a", "b"], ["b"]]


@pytest.mark.parametrize("interval", [30, 10, 300, 1])
def test_the_cadence_gives_2_calls_per_interval_and_an_end_noticed_within_one(interval):
    period, max_age = cadence(interval)
    assert period <= interval / 2  # an end is noticed at the next tick (plus the call's own duration)
    assert max_age < period  # so each tick's first ask starts a call: one call per tick, 2 per interval


class UpstreamSpawner:
    """What PollsShared sits on: JupyterHub's Spawner polling methods, as upstream has them."""

    def __init__(self):
        self.log, self._poll_callback, self.stopped_polling = logging.getLogger("test"), None, 0

    def start_polling(self):
        raise AssertionError("a timer of its own")

    def stop_polling(self):
        self.stopped_polling += 1

    async def poll_and_notify(self):
        status = await self.poll()
        if status is not None:
            self.stop_polling()
            self.noticed_at = time.monotonic()
        return status


class Watched(PollsShared, UpstreamSpawner):
    poll_interval = 0.4

    def __init__(self, key, query):
        super().__init__()
        self.key, self.query = key, query

    async def poll(self):
        answer = await self.query.ask(self.key, self.poll_max_age())
        return None if answer.states.get(self.key) == "running" else 1


def test_two_hundred_servers_are_polled_by_one_tick_one_call_each_and_an_end_is_noticed_at_the_next(monkeypatch):
    ticks_run = []
    tick = shared_poll.Tick.tick

    async def counted(self):
        ticks_run.append(time.monotonic())
        return await tick(self)
    monkeypatch.setattr(shared_poll.Tick, "tick", counted)

    async def run():
        calls, ended = [], {}

        async def fetch(keys):
            calls.append(time.monotonic())
            return {key: "running" for key in keys if key not in ended}
        query = SharedQuery(fetch)
        spawners = [Watched(f"unit{n}", query) for n in range(200)]
        for spawner in spawners:
            spawner.start_polling()
        await asyncio.sleep(2.05)  # 5 intervals of 0.4 s
        per_interval, per_tick = len(calls) / 5, len(calls) / max(len(ticks_run), 1)
        ended["unit7"] = time.monotonic()
        await asyncio.sleep(0.5)
        noticed = getattr(spawners[7], "noticed_at", None)
        for spawner in spawners:
            spawner.stop_polling()
        ticks = [tick for tick in shared_poll.TICKS.values() if tick.callback is not None]
        return per_interval, per_tick, noticed and noticed - ended["unit7"], ticks, spawners[8]

    per_interval, per_tick, delay, ticks, other = asyncio.run(run())
    # one call per tick for all 200 servers, at most 2 per interval. (A machine under load runs fewer ticks than
    # 2 per interval: tornado's PeriodicCallback skips those it is late for; CI measured 1.4.)
    assert per_interval <= 2.5 and 0 < per_tick <= 1 and len(ticks_run) >= 3, (per_interval, per_tick, ticks_run)
    assert delay is not None and delay <= 0.4  # within one poll interval
    assert ticks == []  # nobody watched: no timer left
    assert not hasattr(other, "noticed_at")


def test_a_server_said_to_have_ended_is_noticed_at_once_with_a_fresh_answer_and_requests_coalesce():
    """A unit's ExecStopPost tells the hub (SIGWINCH -> PollNow): every watched server is polled at once, not reusing
    the tick's answer (up to a quarter interval old), so her route to the dead server's port goes now. Requests
    made while a round runs cost one more round, not one each."""
    class Slow(Watched):
        poll_interval = 600  # the periodic tick alone would notice in 300 s

    async def run():
        calls, ended = [], set()

        async def fetch(keys):
            calls.append(sorted(keys))
            await asyncio.sleep(0.05)
            return {key: "running" for key in keys if key not in ended}
        query = SharedQuery(fetch)
        spawners = [Slow(f"unit{n}", query) for n in range(3)]
        for spawner in spawners:
            spawner.start_polling()
        token = shared_poll.PERIODIC.set(True)
        await asyncio.gather(*(query.ask(s.key, s.poll_max_age()) for s in spawners))  # the tick's: all running
        shared_poll.PERIODIC.reset(token)
        ended.add("unit1")
        begun = time.monotonic()
        now = shared_poll.PollNow()
        for _ in range(20):  # a class's stops, signalled at once: one round
            now.request()
        await asyncio.sleep(0.02)  # (that round's call is on its way)
        for _ in range(20):  # and more while it runs: one round after it
            now.request()
        await now.task
        for spawner in spawners:
            spawner.stop_polling()
        return calls, getattr(spawners[1], "noticed_at", None), begun, spawners[0]

    calls, noticed, begun, other = asyncio.run(run())
    assert noticed is not None and noticed - begun < 0.5
    assert len(calls) == 3, calls  # the tick's, then two rounds for 40 requests
    assert not hasattr(other, "noticed_at")


# --- Slurm: a squeue script stands in for Slurm ---------------------------------------------------------------
SQUEUE = r'''#!/usr/bin/env python3
"""squeue for the tests: the jobs of $FAKE_SLURM/jobs.json {id: line}; ids in hidden.json are listed only to a
per-job call (what PrivateData=jobs does to a hub user); error.txt, when present, is the error every call gives.
Each call is appended to calls.log."""
import json, os, sys
d = os.environ["FAKE_SLURM"]
args = sys.argv[1:]
with open(os.path.join(d, "calls.log"), "a") as f:
    f.write(json.dumps(args) + "\n")
if os.path.exists(os.path.join(d, "error.txt")):
    sys.stderr.write(open(os.path.join(d, "error.txt")).read())
    sys.exit(1)
jobs, hidden = json.load(open(os.path.join(d, "jobs.json"))), json.load(open(os.path.join(d, "hidden.json")))
ids, fmt = args[args.index("-j") + 1].split(","), args[args.index("-o") + 1]
shared = fmt.startswith("%i ")
known = [i for i in ids if i in jobs and not (shared and i in hidden)]
if len(ids) == 1 and not known:
    sys.stderr.write("slurm_load_jobs error: Invalid job id specified\n")
    sys.exit(1)
for i in known:
    print(f"{i} {jobs[i]}" if shared else jobs[i])
'''
UNREACHABLE = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)"


class FakeSlurm:
    def __init__(self, path):
        self.dir = path
        (path / "bin").mkdir()
        (path / "bin" / "squeue").write_text(SQUEUE)
        (path / "bin" / "squeue").chmod(0o755)
        self.set(jobs={}, hidden=[])

    def set(self, jobs=None, hidden=None, error=None):
        if jobs is not None:
            (self.dir / "jobs.json").write_text(json.dumps(jobs))
        if hidden is not None:
            (self.dir / "hidden.json").write_text(json.dumps(hidden))
        if error is None:
            (self.dir / "error.txt").unlink(missing_ok=True)
        else:
            (self.dir / "error.txt").write_text(error + "\n")

    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.log"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def shared_calls(self):
        return [c for c in self.calls() if c[c.index("-o") + 1].startswith("%i ")]

    def alone_calls(self):
        return [c for c in self.calls() if not c[c.index("-o") + 1].startswith("%i ")]


@pytest.fixture
def slurm(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path)
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    monkeypatch.setattr(slurm_spawner, "JOBS", SharedQuery(slurm_spawner.squeue_jobs))
    return fake


def job_spawner(job_id: str) -> slurm_spawner.SlurmSpawner:
    """A spawner whose per-job call runs: this process's own user (batchspawner reads her home), exec_prefix ""
    (the same squeue, without sudo; slurm.py's is sudo -u USER)."""
    name = getpass.getuser()
    user = types.SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/")
    hub = types.SimpleNamespace(public_host="", api_url="http://127.0.0.1:8081/hub/api/", base_url="/hub/")
    spawner = slurm_spawner.SlurmSpawner(user=user, hub=hub, config=Config({"SlurmSpawner": {"exec_prefix": ""}}),
                                         orm_spawner=types.SimpleNamespace(name="", server=None))
    spawner.job_id = job_id
    return spawner


def periodic_polls(spawners):
    async def run():
        PERIODIC.set(True)
        return await asyncio.gather(*(s.poll() for s in spawners))
    return asyncio.run(run())


RUNNING = "RUNNING cn1|None|2026-12-06T08:00:00|2026-12-06T16:00:00|8:00:00"


def test_n_jobs_polled_at_once_make_one_squeue_with_the_per_job_answers(slurm):
    slurm.set(jobs={str(i): RUNNING for i in range(100, 150)} | {"150": "PENDING n/a|Resources|N/A|N/A|1:00:00"})
    spawners = [job_spawner(str(i)) for i in range(100, 151)]
    assert periodic_polls(spawners) == [None] * 51
    [call] = slurm.calls()
    assert call[call.index("-j") + 1].split(",") == sorted(str(i) for i in range(100, 151))
    assert spawners[0].job_status == RUNNING and spawners[0].state_gethost() == "cn1"
    assert spawners[0].session_details()["ends_at"].startswith("2026-12-06T")
    assert spawners[-1].queue_status()["reason"] == "Resources"


def test_a_job_that_ended_is_seen_with_its_final_state_and_why(slurm):
    slurm.set(jobs={"100": RUNNING, "101": "CANCELLED cn1|None|2026-12-06T08:00:00|2026-12-06T09:00:00|1:00:00"})
    running, cancelled = job_spawner("100"), job_spawner("101")
    assert periodic_polls([running, cancelled]) == [None, 1]
    assert cancelled.ended["reason"] == "cancelled" and cancelled.job_id == ""
    assert len(slurm.calls()) == 1


def test_a_job_the_shared_squeue_does_not_list_is_asked_alone_before_it_counts_as_ended(slurm):
    """PrivateData=jobs: the hub's own squeue does not see job 101, the user's does; 102 is gone for good."""
    slurm.set(jobs={"100": RUNNING, "101": RUNNING}, hidden=["101"])
    spawners = [job_spawner(i) for i in ("100", "101", "102")]
    assert periodic_polls(spawners) == [None, None, 1]
    assert len(slurm.shared_calls()) == 1
    assert sorted(c[c.index("-j") + 1] for c in slurm.alone_calls()) == ["101", "102"]
    assert spawners[1].job_status == RUNNING and spawners[2].ended["reason"] == "ended (Slurm no longer lists the job)"


def test_slurmctld_down_is_every_jobs_unknown_state_from_one_call_and_the_servers_are_kept(slurm):
    slurm.set(jobs={"100": RUNNING, "101": RUNNING}, error=UNREACHABLE)
    spawners = [job_spawner("100"), job_spawner("101")]
    assert periodic_polls(spawners) == [None, None]
    assert len(slurm.calls()) == 1 and all(s.state_isunknown() for s in spawners)
    assert spawners[0].job_status == UNREACHABLE  # what the per-job call said


def test_any_other_failure_of_the_shared_squeue_has_each_job_asked_alone(slurm):
    slurm.set(jobs={"100": RUNNING})
    spawners = [job_spawner("100"), job_spawner("101")]
    (slurm.dir / "bin" / "squeue").write_text(SQUEUE.replace('shared = fmt.startswith("%i ")', 'shared = False\n'
        'if fmt.startswith("%i "): sys.stderr.write("squeue: error: unrecognized option\\n"); sys.exit(1)'))
    assert periodic_polls(spawners) == [None, 1]
    assert len(slurm.calls()) == 3  # the shared one, then each alone


def test_polls_within_max_age_reuse_the_answer_and_a_stale_one_is_refreshed(slurm, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(slurm_spawner, "JOBS", SharedQuery(slurm_spawner.squeue_jobs, clock=clock))
    slurm.set(jobs={"100": RUNNING})
    spawner = job_spawner("100")
    spawner.poll_interval = 30
    periodic_polls([spawner])
    clock.now += 7  # within max_age (poll_interval / 4)
    periodic_polls([spawner])
    assert len(slurm.calls()) == 1
    slurm.set(jobs={"100": "TIMEOUT cn1|TimeLimit|2026-12-06T08:00:00|2026-12-06T16:00:00|8:00:00"})
    clock.now += 0.6
    assert periodic_polls([spawner]) == [1] and spawner.ended["reason"] == "time limit reached"
    assert len(slurm.calls()) == 2


def test_a_poll_outside_the_periodic_one_takes_a_fresh_answer(slurm):
    """JupyterHub's poll at its start, after a stop, on a page: all of them at once share one fresh call."""
    slurm.set(jobs={"100": RUNNING, "101": RUNNING})
    spawners = [job_spawner("100"), job_spawner("101")]

    async def run():
        await asyncio.gather(*(s.poll() for s in spawners))
        return await asyncio.gather(*(s.poll() for s in spawners))

    assert asyncio.run(run()) == [None, None] and len(slurm.calls()) == 2


# --- local units -----------------------------------------------------------------------------------------------
class UnitsSystemctl(RecordingSystemctl):
    """`systemctl list-units --all ... NAME.service...` answered as systemd does from `units` (those it holds:
    a unit that ended well is forgotten, so not listed), in its own order, each row with a description."""

    def run(self, *args, check=True):
        proc = super().run(*args, check=check)
        if args[0] == "list-units":
            asked = args[args.index("--") + 1:]
            rows = [(f"{unit}.service", {"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead",
                                         **props}) for unit, props in sorted(self.units.items())]
            proc.stdout = "".join(f"{name} {p['LoadState']} {p['ActiveState']} {p['SubState']} /usr/bin/python3 -m x\n"
                                  for name, p in rows if name in asked)
        return proc


def unit_spawner(name: str) -> local_spawner.LocalSpawner:
    user = types.SimpleNamespace(name=name, id=7, url=f"/user/{name}/", spawners={})
    spawner = local_spawner.LocalSpawner(user=user, orm_spawner=types.SimpleNamespace(name="", server=None),
                                         _deprecated_db_session=None)
    spawner.record_end = lambda reason: setattr(spawner, "ended", {"reason": reason})
    return spawner


@pytest.fixture
def systemd(monkeypatch):
    recorder = UnitsSystemctl()
    monkeypatch.setattr(local_spawner, "Systemctl", lambda timeout=120: recorder)
    monkeypatch.setattr(local_spawner, "UNITS", SharedQuery(local_spawner.unit_states))
    return recorder


def test_n_units_polled_at_once_make_one_systemctl_list_units_and_why_one_ended_is_asked_of_it_alone(systemd):
    """One ListUnitsByPatterns for all units (not `systemctl show UNIT...`: a GetAll of every property per unit,
    bench/polling-results.md); systemd's Result, which that list lacks, asked of the unit that ended, once."""
    names = [f"u{i}" for i in range(30)]
    systemd.units = {f"jupyter-{n}-singleuser": {"ActiveState": "active", "SubState": "running"} for n in names}
    systemd.units["jupyter-u3-singleuser"] = {"ActiveState": "failed", "SubState": "failed", "Result": "signal",
                                              "ExecMainStatus": "9"}
    spawners = [unit_spawner(n) for n in names]
    statuses = periodic_polls(spawners)
    assert statuses == [1 if n == "u3" else None for n in names]
    [listed] = systemd.calls
    assert listed[0] == "list-units" and len(listed[listed.index("--") + 1:]) == 30
    assert systemd.shown == ["jupyter-u3-singleuser"]
    assert spawners[3].ended["reason"] == "the server was killed by a signal (signal 9)"
    assert periodic_polls(spawners[3:4]) == [1] and systemd.shown == ["jupyter-u3-singleuser"]  # not asked again


def test_a_unit_systemd_forgot_ended_and_a_failed_systemctl_has_each_unit_asked_alone(systemd, monkeypatch):
    spawner = unit_spawner("ann")
    assert periodic_polls([spawner]) == [1] and spawner.ended["reason"] == "the server exited"
    assert systemd.shown == []  # not listed: nothing more to ask
    asked_alone = []

    async def service_running(unit):
        asked_alone.append(unit)
        return True
    monkeypatch.setattr(local_spawner.SystemdSpawner.poll.__globals__["systemd"], "service_running", service_running)
    systemd.run = lambda *args, check=True: types.SimpleNamespace(returncode=1, stdout="", stderr="bus down")
    assert periodic_polls([unit_spawner("bob"), unit_spawner("cy")]) == [None, None]
    assert asked_alone == ["jupyter-bob-singleuser", "jupyter-cy-singleuser"]
