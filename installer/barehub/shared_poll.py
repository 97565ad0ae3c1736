"""Many servers' states from one call per poll interval, whatever the number of servers.

Upstream, every spawner asks about its own server at every poll: batchspawner runs `sudo -u USER squeue -j ID` per
job, systemdspawner `systemctl is-active UNIT` per unit, every `Spawner.poll_interval` (30 s). The hub's forks and
slurmctld's RPCs then grow with the number of running servers (200 servers: 400 squeue calls a minute, each one a
sudo, a squeue and an RPC). Here a spawner asks a SharedQuery instead, which answers every spawner's ask from one
call naming all the watched keys (job ids, unit names):
- asks made while a call runs, or in the same turn of the event loop (JupyterHub's poll of every server at its
  start: N asks, one call), share that call;
- an answer younger than the ask's `max_age` is reused; the periodic poll asks with max_age = poll_interval / 4;
- every other ask (a start, a stop, a page, JupyterHub's poll at its start) asks with max_age 0: it gets a call
  that started after it asked (still shared with the asks of that moment), so nothing new is taken from a stale
  answer (a unit restarted under the same name);
- the periodic polls of all of a class's servers run at once, from one timer (Tick) every poll_interval / 2: one
  wake-up and one call per tick, so 2 calls per poll_interval, and the end of a server is noticed at the next
  tick, within one poll_interval as upstream's own poll did. Bound: poll_interval / 2 plus the call's duration.
A watched key is dropped when its server is forgotten (`forget`), or when nobody asked for it for a while.
The answer of a failed call is shared too (with its error): the spawner then decides (slurmctld down: the same
"unknown" state for every job; any other failure: each server asked alone, the old way), so one answer's error
never hides a server's end.
"""
from __future__ import annotations

import asyncio
import contextvars
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from tornado.ioloop import PeriodicCallback

FORGET_AFTER = 600.0  # s a key nobody asked for stays in the calls (at least; 4 times the longest max_age asked)
PERIODIC = contextvars.ContextVar("barehub_periodic_poll", default=False)  # set while JupyterHub's own poll runs
FRESH = contextvars.ContextVar("barehub_fresh_poll", default=False)  # set while PollNow polls: no answer reused


@dataclass
class Answer:
    """One call's answer: when it started, which keys it named, what it said of each (a key it did not list is
    missing), or the error it failed with."""
    started: float
    asked: frozenset
    states: dict = field(default_factory=dict)
    error: BaseException | None = None


class SharedQuery:
    """Coalesces asks about many keys into calls of `fetch(keys) -> {key: state}` (keys it does not list are
    missing; an exception is that call's error, given to every ask it answers). One call runs at a time."""

    def __init__(self, fetch: Callable[[list[str]], Awaitable[dict[str, Any]]], clock=time.monotonic):
        self.fetch, self.clock = fetch, clock
        self.watched: dict[str, float] = {}  # key -> when it was last asked for
        self.forget_after = FORGET_AFTER
        self.answer: Answer | None = None  # the last call's
        self.running: asyncio.Future | None = None
        self.running_answer: Answer | None = None  # (its start and keys, while it runs)
        self.next: asyncio.Future | None = None  # a call asked for, to start once the running one ends
        self.task: asyncio.Task | None = None
        self.calls = 0

    async def ask(self, key: str, max_age: float = 0.0) -> Answer:
        """An answer naming `key`, from a call that started at most `max_age` s ago (0: after this ask)."""
        now, loop = self.clock(), asyncio.get_running_loop()
        self.watched[key] = now
        self.forget_after = max(self.forget_after, 4 * max_age)
        if any(f is not None and f.get_loop() is not loop for f in (self.running, self.next)):
            self.running = self.running_answer = self.next = None  # (a new event loop: a test's, a restarted hub's)
        answer = self.answer
        if answer is not None and key in answer.asked and now - answer.started < max_age:
            return answer
        running = self.running_answer
        if self.running is not None and key in running.asked and now - running.started < max_age:
            return await asyncio.shield(self.running)
        if self.next is None:
            self.next = loop.create_future()
            self.task = loop.create_task(self.run_next(self.next, self.running))
        return await asyncio.shield(self.next)

    def forget(self, key: str) -> None:
        """The key's server ended or was stopped: later calls do not name it."""
        self.watched.pop(key, None)

    async def run_next(self, future: asyncio.Future, before: asyncio.Future | None) -> None:
        if before is not None:
            await asyncio.wait([before])
        await asyncio.sleep(0)  # asks made in this turn of the event loop (N polls gathered at once) join
        now = self.clock()
        self.watched = {key: at for key, at in self.watched.items() if now - at <= self.forget_after}
        answer = Answer(started=now, asked=frozenset(self.watched))
        self.next, self.running, self.running_answer = None, future, answer
        self.calls += 1
        try:
            answer.states = dict(await self.fetch(sorted(answer.asked)))
        except Exception as e:  # shared with every ask this call answers
            answer.error = e
        finally:
            self.answer = answer
            self.running = self.running_answer = None
            future.set_result(answer)


def cadence(poll_interval: float) -> tuple[float, float]:
    """(period of the shared tick that polls every watched spawner at once, max_age of the answers it takes): the
    tick's first ask starts a call (the last tick's began a period ago, more than max_age), the others share it,
    so there are 2 calls per poll_interval; an end is noticed at the next tick, within one poll_interval (half of it
    plus the call's own duration). max_age lets a tick take the answer of a call a spawn or a page asked for just
    before it."""
    return poll_interval / 2, poll_interval / 4


class Tick:
    """One timer for every watched spawner of a class with the same poll_interval: at each tick, all their
    periodic polls at once (one event loop wake-up and one shared call, whatever their number).

    Why. Upstream, each spawner has a PeriodicCallback of its own; with the shared query the calls were flat in N
    but the wake-ups were not: 200 local servers woke the hub ~840 times a minute (each spawner every
    poll_interval/2), and its idle CPU at 200 servers was 0.205x upstream's where 0.20x was the aim
    (bench/polling-results.md); with this tick, 0.139x (0.43 against 3.12 s/min, bench/polling-200-results.md)."""

    def __init__(self, poll_interval: float):
        self.poll_interval = poll_interval
        self.spawners: dict[int, Any] = {}  # id -> spawner, in the order they were watched
        self.callback: PeriodicCallback | None = None
        self.loop = None

    def watch(self, spawner) -> None:
        self.spawners[id(spawner)] = spawner
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # (a spawner set up outside the hub's loop: a test)
            loop = None
        if self.callback is None or self.loop is not loop:  # (a new event loop: a test's, a restarted hub's)
            if self.callback is not None:
                self.callback.stop()
            self.loop = loop
            self.callback = PeriodicCallback(self.tick, 1e3 * cadence(self.poll_interval)[0])
            self.callback.start()

    def unwatch(self, spawner) -> None:
        self.spawners.pop(id(spawner), None)
        if not self.spawners and self.callback is not None:
            self.callback.stop()
            self.callback = None

    async def tick(self) -> None:
        spawners = list(self.spawners.values())
        results = await asyncio.gather(*(spawner.poll_and_notify() for spawner in spawners), return_exceptions=True)
        for spawner, result in zip(spawners, results):
            if isinstance(result, Exception):  # as tornado's PeriodicCallback logs a callback's error
                spawner.log.error("%s: poll failed: %s: %s", getattr(spawner, "_log_name", spawner),
                                  type(result).__name__, result)


TICKS: dict[tuple[type, float], Tick] = {}


class PollsShared:
    """A spawner polled by its class's shared Tick (the module's cadence), whose periodic poll takes answers up to
    max_age old; any other poll (JupyterHub's at its start, after a stop, on a page) asks for a fresh one."""

    def poll_max_age(self) -> float:
        return cadence(self.poll_interval)[1] if PERIODIC.get() and not FRESH.get() else 0.0

    def start_polling(self):
        if self.poll_interval <= 0:
            return super().start_polling()
        self.stop_polling()
        TICKS.setdefault((type(self), self.poll_interval), Tick(self.poll_interval)).watch(self)

    def stop_polling(self):
        for tick in TICKS.values():
            tick.unwatch(self)
        super().stop_polling()

    async def poll_and_notify(self):
        token = PERIODIC.set(True)
        try:
            return await super().poll_and_notify()
        finally:
            PERIODIC.reset(token)


class PollNow:
    """Every watched spawner polled at once, with fresh answers, when something says a server has ended (a local
    server's unit tells the hub from its ExecStopPost, see barehub.local_spawner.END_NOTICE).

    Why. The periodic tick notices an end within half a poll interval (15 s by default); until then her route still
    leads to the server's port, which is free once her server has died (out of memory, a crash), and any account
    can bind it and receive what her open JupyterLab sends, her server's cookie with it. Asked while a round runs,
    one more round follows it (a class's 200 stops are a few rounds, not 200)."""

    def __init__(self):
        self.task: asyncio.Task | None = None
        self.again = False

    def request(self) -> None:
        if self.task is not None and not self.task.done():
            self.again = True
            return
        self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while True:
            self.again = False
            token = FRESH.set(True)
            try:
                await asyncio.gather(*(tick.tick() for tick in list(TICKS.values())))
            finally:
                FRESH.reset(token)
            if not self.again:
                return


POLL_NOW = PollNow()  # the hub's (barehub.hub: on SIGWINCH)
