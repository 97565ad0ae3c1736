"""Usage in the hub process: a user's own page and API, everyone's for admins, Prometheus metrics, and the quota
check at each spawn — all from one book of this month's sessions (barehub.usage_sources), gathered in a thread at
most once a minute, so a page view, a scrape or a spawn never waits on sacct twice.

- GET {hub}/api/users/NAME/usage[?since=&until=]: NAME's sessions summed per profile, her total and her quotas;
  with read:servers for NAME (her own token or cookie, an admin), as her sessions are.
- GET {hub}/api/usage[?since=&until=&by=user|group|profile]: everyone's; admins only (unfiltered admin:users).
- GET {hub}/usage: the page (her month, her quotas; an admin sees everyone's by user and by group too).
- /hub/metrics (JupyterHub's, with its token): barehub_usage_*_total{user, group} for the calendar month (UTC),
  which restart at each month's start (Prometheus' increase() counts across a restart), and barehub_usage_up,
  0 while a source (slurmdbd) does not answer — the last figures stay, they do not drop to zero.
- the quota gate (barehub.quotas) before each spawn: a spawn of a user whose month is used up is refused with the
  message; when the accounting cannot answer, the spawn goes ahead and the hub's log says so (a slurmdbd restart
  must not stop a class from starting).
"""
from __future__ import annotations

import asyncio
import time

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import Scope, needs_scope
from jupyterhub.spawner import Spawner
from jupyterhub.utils import maybe_future
from prometheus_client.core import REGISTRY, CounterMetricFamily, GaugeMetricFamily
from tornado import web

from barehub import fsutil, quotas, usage, usage_sources
from barehub.base.errors import BarehubError
from barehub.base.paths import Paths

REFRESH_S = 60  # the book's age at which it is gathered again (c.Barehub.usage_refresh)


class UsageBook:
    """This month's sessions, as of the last gathering; `error` says why the last one failed (then `sessions` are
    the last good ones)."""

    def __init__(self, paths: Paths, quota_list: list[quotas.Quota], quota_admins: bool, log,
                 refresh_s: int = REFRESH_S):
        self.paths, self.quotas, self.quota_admins, self.log = paths, quota_list, quota_admins, log
        self.refresh_s = refresh_s
        self.sessions: list[usage.Session] = []
        self.gathered_at = 0.0
        self.error = ""
        self.lock = asyncio.Lock()
        self.asked = asyncio.Semaphore(1)  # windows other than this month: one sacct at a time, whoever asks

    async def month(self, max_age: float | None = None) -> list[usage.Session]:
        """This month's sessions, gathered again when older than max_age (the refresh interval); raises
        BarehubError if that failed."""
        async with self.lock:
            if time.time() - self.gathered_at >= (self.refresh_s if max_age is None else max_age):
                await self.gather()
        if self.error:
            raise BarehubError(self.error)
        return self.sessions

    async def refresh(self) -> None:
        """The minute's gathering (a failure is kept in `error` and logged once)."""
        async with self.lock:
            await self.gather()

    async def gather(self) -> None:
        now = time.time()
        try:
            found = await asyncio.to_thread(usage_sources.gather, self.paths, usage.this_month(now), now,
                                            from_samples=True)  # a minute old at most, as the book itself
        except Exception as e:  # a source that cannot answer (BarehubError), or a defect: never the hub's loop
            message = e.message if isinstance(e, BarehubError) else f"{type(e).__name__}: {e}"
            if message != self.error:
                self.log.warning("usage: %s", message, exc_info=not isinstance(e, BarehubError))
            self.error = message
            self.gathered_at = now
            return
        self.sessions, self.error, self.gathered_at = found.sessions, "", now

    async def window(self, window: usage.Window) -> list[usage.Session]:
        """Sessions of any window: this month's from the book, another asked of the sources now."""
        now = time.time()
        if window.since >= usage.this_month(now).since:
            return await self.month()
        async with self.asked:  # a user asking for her past years again and again keeps one thread busy, no more
            found = await asyncio.to_thread(usage_sources.gather, self.paths, window, now)
        return found.sessions

    async def refusal(self, spawner) -> str | None:
        """Why this spawn must not go ahead (a quota used up), or None."""
        user = spawner.user
        if not self.quotas or (user.admin and not self.quota_admins):
            return None
        try:
            sessions = await self.month()
        except BarehubError as e:
            self.log.warning("usage: quotas not checked for %s's spawn: %s", user.name, e.message)
            return None
        standing = quotas.standings(self.quotas, user.name, primary_group(user.name), sessions, time.time())
        return quotas.refusal(standing, wants_gpus(spawner))

    def standing(self, name: str, sessions: list[usage.Session]) -> list[dict]:
        return [s.as_dict() for s in quotas.standings(self.quotas, name, primary_group(name), sessions, time.time())]


def primary_group(user: str) -> str:
    """The group a user's sessions are charged to; "" for a name without an account here."""
    try:
        return fsutil.primary_group(user)
    except (KeyError, OverflowError):
        return ""


def wants_gpus(spawner) -> bool:
    """Whether the spawn asks for a GPU: a Slurm request's gres (batchspawner's req_gres), or a Kubernetes limit."""
    gres = str(getattr(spawner, "req_gres", "") or "")
    limits = getattr(spawner, "extra_resource_limits", None) or {}
    return "gpu" in gres.lower() or any("gpu" in str(key).lower() for key in limits)


def install_quota_gate(book: UsageBook) -> None:
    """Every spawner class checks the quotas first, before the site's own pre_spawn_hook (JupyterHub runs
    apply_user_options before this, so the profile's request is known)."""
    original = getattr(Spawner.run_pre_spawn_hook, "barehub_original", Spawner.run_pre_spawn_hook)

    async def run_pre_spawn_hook(spawner):
        reason = await book.refusal(spawner)
        if reason:
            spawner.log.warning("refused a spawn of %s: %s", spawner._log_name, reason)
            refused = web.HTTPError(403, reason)
            # what JupyterHub's pages show of a failed spawn (without it: "Failed to start your server on the last
            # attempt", seen in test_usage)
            refused.jupyterhub_message = reason
            raise refused
        return await maybe_future(original(spawner))

    run_pre_spawn_hook.barehub_original = original
    Spawner.run_pre_spawn_hook = run_pre_spawn_hook


def window_of_request(handler) -> usage.Window:
    try:
        return usage.window_of(handler.get_argument("since", None), handler.get_argument("until", None), time.time())
    except BarehubError as e:
        raise web.HTTPError(400, e.message.replace("--", "") + (f" ({e.hint})" if e.hint else "")) from None


def book_of(handler) -> UsageBook:
    return handler.settings["barehub_usage"]


async def report_of(handler, window: usage.Window, by: str, user: str | None = None) -> dict:
    try:
        sessions = await book_of(handler).window(window)
    except BarehubError as e:
        raise web.HTTPError(503, f"usage cannot be counted now: {e.message}") from None
    if user is not None:
        sessions = usage_sources.of_user(sessions, user)
    return usage.summarize(sessions, window, by, time.time()).as_dict()


class UserUsageAPIHandler(APIHandler):
    @needs_scope("read:servers")
    async def get(self, user_name):
        if self.find_user(user_name) is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        report = await report_of(self, window_of_request(self), "profile", user_name)
        book = book_of(self)
        report["quotas"] = book.standing(user_name, book.sessions) if book.quotas else []
        self.write(report)


def is_admin(handler) -> bool:
    return handler.parsed_scopes.get("admin:users") == Scope.ALL


class UsageAPIHandler(APIHandler):
    async def get(self):
        if self.current_user is None or not is_admin(self):
            raise web.HTTPError(403, "everyone's usage is for admins (admin:users); your own is at "
                                     "/hub/api/users/NAME/usage")
        by = self.get_argument("by", "user")
        if by not in usage.BY:
            raise web.HTTPError(400, f"by={by!r} is not one of {', '.join(usage.BY)}")
        self.write(await report_of(self, window_of_request(self), by))


class UsagePageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        user, book = self.current_user, book_of(self)
        now, error = time.time(), ""
        window = usage.this_month(now)
        try:
            sessions = await book.month()
        except BarehubError as e:
            sessions, error = book.sessions, e.message
        window = usage.Window(window.since, now)
        own = usage.summarize(usage_sources.of_user(sessions, user.name), window, "profile", now)
        everyone = []
        if user.admin:
            everyone = [usage.summarize(sessions, window, by, now) for by in ("group", "user")]
        html = await self.render_template("usage.html", user=user, own=own, everyone=everyone, error=error,
                                          standing=book.standing(user.name, sessions) if book.quotas else [],
                                          since=usage.iso(window.since), until=usage.iso(now))
        self.finish(html)


METRICS = (  # name, help, the figure of a row
    ("barehub_usage_sessions_total", "Sessions (servers run) this month (UTC)", lambda r: r.sessions),
    ("barehub_usage_wall_seconds_total", "Wall time of the sessions this month (UTC)", lambda r: r.wall_hours * 3600),
    ("barehub_usage_cpu_seconds_total", "CPU time used by the sessions this month (UTC)", lambda r: r.cpu_hours * 3600),
    ("barehub_usage_gpu_seconds_total", "GPU time allocated to the sessions this month (UTC): GPUs x wall time",
     lambda r: r.gpu_hours * 3600),
    ("barehub_usage_memory_byte_seconds_total", "Memory of the sessions this month (UTC), integrated over time",
     lambda r: r.mem_gib_hours * usage.GIB * 3600),
)


class UsageCollector:
    """The book's month per (user, group), as counters at each scrape (without waiting: the hub refreshes the book
    every c.Barehub.usage_refresh seconds)."""

    def __init__(self, book: UsageBook):
        self.book = book

    def describe(self):
        return []  # no collection at registration

    def collect(self):
        now = time.time()
        window = usage.Window(usage.this_month(now).since, now)
        pairs = sorted({(s.user, s.group) for s in self.book.sessions})
        families = [CounterMetricFamily(name[:-len("_total")], text, labels=["user", "group"])
                    for name, text, _ in METRICS]
        for user, group in pairs:
            mine = [s for s in self.book.sessions if s.user == user and s.group == group]
            row = usage.summarize(mine, window, "user", now).total
            for family, (_, _, value) in zip(families, METRICS):
                family.add_metric([user, group or "(unknown)"], value(row))
        yield from families
        yield GaugeMetricFamily("barehub_usage_up", "1 when every usage source (systemd's ledger, Slurm's "
                                "accounting) answered at the last gathering", value=0 if self.book.error else 1)
        yield GaugeMetricFamily("barehub_usage_gathered_timestamp_seconds", "When usage was last gathered",
                                value=self.book.gathered_at)


_COLLECTORS: list[UsageCollector] = []


def start(settings: dict, book: UsageBook) -> None:
    """In the hub: the book in the handlers' settings, the quota gate, the metrics, and a refresh every minute."""
    from tornado.ioloop import PeriodicCallback

    settings["barehub_usage"] = book
    install_quota_gate(book)
    for old in _COLLECTORS:
        REGISTRY.unregister(old)
    _COLLECTORS[:] = [UsageCollector(book)]
    REGISTRY.register(_COLLECTORS[0])
    refresh = PeriodicCallback(lambda: asyncio.ensure_future(book.refresh()), book.refresh_s * 1000)
    refresh.start()
    asyncio.ensure_future(book.refresh())
    settings["barehub_usage_refresh"] = refresh


HANDLERS = [
    (r"/api/users/([^/]+)/usage", UserUsageAPIHandler),
    (r"/api/usage", UsageAPIHandler),
    (r"/usage", UsagePageHandler),
]
