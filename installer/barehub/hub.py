"""The hub process: JupyterHub, reloaded in place and stopping so that a restart goes unnoticed
(`python -m barehub.hub`).

Stopping: on SIGTERM, JupyterHub 6 cleans up and cancels its tasks but leaves its HTTP server
listening: connections it accepts meanwhile are dropped, and the proxy can only answer those with a
502. Here the hub first stops listening, so new connections are refused (traefik retries them against
the next hub, see proxy_config.HUB_RETRY), and lets requests already being served finish.

Reloading: JupyterHub cannot re-read its config, so `barehub reload` (the unit's ExecReload) asks this
process to stop and exec() itself anew: SIGHUP with the fragments as they are now, SIGUSR2 with the last
known-good ones. The PID stays, so systemd sees a reload (no "Failed with result 'signal'"), user
servers keep running (cleanup_servers is off) and traefik retries the hub's route meanwhile.

Falling back: a config can pass `barehub check` and still fail when the hub starts (a port taken, a
database role conflict). Then this process records why in state/hub-run.json and execs itself with the
known-good fragments, so the hub is back within seconds instead of crash-looping (measured before: 12
restarts in 25 s and 502s on /hub). `barehub reload`, the installer and `barehub status` read that record.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from functools import partial

# JupyterHub reads its spawn-duration buckets from the environment when it is imported. Its default tops
# out at 10 minutes; a Slurm job can wait in the queue for hours, so barehub's reach 2 days. A site
# overrides them with Environment= in a drop-in of the hub unit.
SPAWN_BUCKETS_ENV = "JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS"
SPAWN_BUCKETS_S = (0.5, 1, 2.5, 5, 10, 15, 30, 60, 120, 180, 300, 600, 1800, 3600, 7200, 14400, 28800,
                   86400, 172800, float("inf"))
os.environ.setdefault(SPAWN_BUCKETS_ENV, ",".join(str(b) for b in SPAWN_BUCKETS_S))

from barehub.lazy_imports import defer_slow_imports  # noqa: E402

defer_slow_imports()  # 0.78 s of the 2.0 s every start, reload and fallback spends importing (barehub.lazy_imports)

from jupyterhub.app import JupyterHub  # noqa: E402 (after the buckets and the stand-ins)
from tornado.ioloop import IOLoop  # noqa: E402

from barehub import config_loading, hub_config, quotas, sessions, shared_poll, units, usage_hub
from barehub.config_loading import CONFIG_SET_ENV, CURRENT, KNOWN_GOOD
from barehub.base.errors import BarehubError
from barehub.base.paths import Paths

DRAIN_TIMEOUT_S = 5
# Connections waiting for the hub to accept them. traefik opens a new connection to the hub for every request (the
# hub's route keeps none idle, so that a restart loses none, see proxy_config); 200 servers spawned at once overflowed
# tornado's default queue of 128 between 183 and 555 times a round (bench/results.md, the class rows: /proc/net/netstat
# ListenOverflows), each dropped attempt costing its request ~1 s until the kernel's SYN retry; CHP, which keeps its
# connections open, overflowed 0-4 times. The kernel caps it at net.core.somaxconn (4096 on Debian 12).
LISTEN_BACKLOG = 1024
FAILED_ENV = "BAREHUB_FAILED_CONFIG"  # why the current fragments failed, handed to the known-good hub
# The longest wait between two looks at a starting server (see poll_starting_servers_often).
SERVER_POLL_MAX_S = 1.0


class BarehubJupyterHub(JupyterHub):
    reexec_with: str | None = None

    def init_handlers(self):
        """JupyterHub's handlers, and barehub's sessions and usage pages and APIs ahead of them (barehub.sessions,
        barehub.usage_hub)."""
        super().init_handlers()
        self.handlers[0:0] = self.add_url_prefix(self.hub_prefix, sessions.HANDLERS + usage_hub.HANDLERS)

    def init_tornado_settings(self):
        """JupyterHub's settings, the site's culling limits for barehub's handlers (barehub.culling), and the usage
        book behind the usage pages, the metrics and the quotas (barehub.usage_hub)."""
        super().init_tornado_settings()
        self.tornado_settings["barehub_cull_policy"] = hub_config.cull_policy(self.config)
        section = hub_config.Barehub(config=self.config)
        book = usage_hub.UsageBook(Paths.from_prefix(os.environ["BAREHUB_PREFIX"]), quotas.parse(section.quotas),
                                   section.quota_admins, self.log, section.usage_refresh)
        usage_hub.start(self.tornado_settings, book)

    def init_db(self):
        """As upstream, on the database barehub backs up only. `systemctl restart` runs no `barehub check`, so a
        fragment that takes the hub to another database (barehub.validation.check_database) fails the start here,
        and the hub comes back on the known-good fragments rather than run on, or migrate, a database that no
        upgrade backs up."""
        from barehub.settings import load_settings
        from barehub.validation import check_database

        paths = Paths.from_prefix(os.environ["BAREHUB_PREFIX"])
        problems = check_database(self.config, config_loading.LOADED.get("files", []), paths, load_settings(paths))
        if problems:
            raise BarehubError(str(problems[0]), f"fix it, then run: systemctl reload {units.HUB_UNIT}")
        super().init_db()

    async def start(self):
        await super().start()
        widen_listen_backlog(self.http_server, LISTEN_BACKLOG)

    async def shutdown_cancel_tasks(self, sig=None):
        if self.http_server:
            await stop_listening_and_drain(self.http_server, self.log)
        close_api_session = getattr(self.proxy, "close_api_session", None)  # barehub's traefik proxy's
        if close_api_session is not None:
            await close_api_session()
        await super().shutdown_cancel_tasks(sig)

    async def launch_instance_async(self, argv=None):
        """As upstream, but a failure propagates (upstream logs it and exits 1), so main() can fall back."""
        await self.initialize(argv)
        await self.start()

    def init_signal(self):
        super().init_signal()
        loop = asyncio.get_event_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.restart_in_place(CURRENT)))
        loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(self.restart_in_place(KNOWN_GOOD)))
        loop.add_signal_handler(signal.SIGWINCH, shared_poll.POLL_NOW.request)  # a server's unit ended

    async def restart_in_place(self, config_set: str) -> None:
        self.log.info("reload requested: restarting in place with the %s config", config_set)
        self.reexec_with = config_set
        await self.shutdown_cancel_tasks()


def widen_listen_backlog(server, backlog: int) -> None:
    """The hub's listening sockets' queue of connections not yet accepted made `backlog` long (JupyterHub listens
    with tornado's default, 128): listen() again on a listening socket only changes its backlog (Linux)."""
    for sock in list(getattr(server, "_sockets", {}).values()):  # tornado 6: the listening sockets
        sock.listen(backlog)


async def stop_listening_and_drain(server, log) -> None:
    """Stop taking connections without dropping a request that has already reached this process.

    A request traefik has sent must get its answer: traefik retries a refused connection (the hub's
    route has a retry middleware), not one that was reset after the request went out (measured: 3 of 14
    in-place restarts answered one /hub request with 502). So: accept what waits in the listen backlog
    (closing the listening socket would reset those), close the listeners (new connections are refused,
    and retried), answer every request from then on with "Connection: close" and close its connection after
    it, so traefik puts none of them back among its idle ones, and wait while connections stay open: traefik
    closes an idle one after proxy_config.HUB_IDLE_S (1 s), so the hub never closes one that traefik may be
    sending a request on. Bounded: what is left after DRAIN_TIMEOUT_S (a long-lived request, a client that keeps
    idle connections longer) is closed then.
    """
    for sock in list(server._sockets.values()):  # tornado 6: the listening sockets
        while True:
            try:
                connection, address = sock.accept()
            except OSError:  # BlockingIOError: the backlog is empty
                break
            server._handle_connection(connection, address)
    server.stop()
    server.conn_params.no_keep_alive = True  # (tornado: each request read from now on is its connection's last)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while server._connections and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if server._connections:
        log.info("closing %d idle connection(s) to stop", len(server._connections))
    await server.close_all_connections()


def poll_starting_servers_often(max_wait: float = SERVER_POLL_MAX_S) -> None:
    """JupyterHub's waits for a server to answer (jupyterhub.utils.wait_for_http_server, and wait_for_server) look
    at it again at most every `max_wait` s, instead of at random intervals that grow to up to 5 s.

    Why. After a spawner has started a server, JupyterHub asks it over HTTP until it answers, with its
    exponential_backoff: waits drawn from 0-0.2 s, 0-0.4 s, ... up to 0-5 s. A server that takes 3 s or more to
    come up (JupyterLab on a busy node, every server of a class at 9:00) is then seen ~1.7 s after it answers, on
    average, and the user waits that long on "Your server is starting". With 1 s, ~0.3 s. The cost: about two
    requests a second to each starting server, instead of one every 2.5 s. Only these two waits of
    jupyterhub.utils are changed (they look up exponential_backoff in that module); every other backoff keeps
    upstream's, as its modules took their own reference to it."""
    from jupyterhub import utils

    upstream = getattr(utils.exponential_backoff, "upstream", utils.exponential_backoff)

    async def exponential_backoff(pass_func, fail_message, *args, **kwargs):
        if len(args) < 3:  # (a max_wait given by position, the third after these two, is the caller's)
            kwargs.setdefault("max_wait", max_wait)
        return await upstream(pass_func, fail_message, *args, **kwargs)

    exponential_backoff.upstream = upstream
    utils.exponential_backoff = exponential_backoff


def run_record(hub: JupyterHub, config_set: str, failed: dict | None) -> dict:
    loaded = config_loading.LOADED
    return {"pid": os.getpid(), "started": time.time(), "config": config_set, "digest": loaded.get("digest"),
            "base_url": hub.base_url, "failed": failed}


def write_record(path, record: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(record, f)
    os.replace(tmp, path)


def describe_failure(exc: BaseException) -> dict:
    """Why the hub could not start, naming the fragment file and line where one can be found."""
    from barehub.validation import problem_from_exception

    loaded = config_loading.LOADED
    problem = problem_from_exception(exc, loaded.get("files", []))
    message = str(problem)
    if problem.file is None:
        changed = config_loading.changed_since_known_good()
        if changed:
            message += " (changed since the known-good config: " + ", ".join(changed) + ")"
    return {"error": message, "digest": loaded.get("digest")}


def reexec(config_set: str, failed: dict | None = None) -> None:
    env = {**os.environ, CONFIG_SET_ENV: config_set}
    env.pop(FAILED_ENV, None)
    if failed:
        env[FAILED_ENV] = json.dumps(failed)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def main(argv=None) -> None:
    config_set = os.environ.get(CONFIG_SET_ENV, CURRENT)
    paths = Paths.from_prefix(os.environ["BAREHUB_PREFIX"])
    poll_starting_servers_often()
    hub = BarehubJupyterHub.instance()
    hub._init_asyncio_patch()
    loop = IOLoop(make_current=False)
    try:
        loop.run_sync(partial(hub.launch_instance_async, argv))
    except BaseException as e:  # SystemExit too: a fragment's sys.exit(), a port JupyterHub cannot bind
        failed = describe_failure(e)
        hub.log.error("the hub cannot start with the %s config: %s", config_set, failed["error"])
        if config_set == CURRENT and config_loading.known_good_differs():
            hub.log.error("starting again with the last known-good config from %s", paths.known_good)
            reexec(KNOWN_GOOD, failed)
        raise
    failed = json.loads(os.environ[FAILED_ENV]) if FAILED_ENV in os.environ else None
    write_record(paths.hub_run_file, run_record(hub, config_set, failed))
    try:
        loop.start()
    finally:
        loop.stop()
    if hub.reexec_with:
        reexec(hub.reexec_with)


if __name__ == "__main__":
    main()
