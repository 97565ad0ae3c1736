"""The hub's proxy backend: jupyterhub-traefik-proxy's file provider, adapted to an external traefik and
made fast when a class is large.

What differs from upstream (pinned 2.1.0; the overridden methods are its private ones). Measured at 1000
routes with traefik 3.7 (bench/results.md has the figures side by side with CHP), upstream's add_route
spent ~104 ms in toml.dump of all routes on the hub's event loop, ~65 ms in traefik re-reading a temp file
created, chmod'ed and written inside its watched directory, ~25 ms in traefik parsing the hub's
bookkeeping, and up to ~114 ms sleeping in its polling backoff. Here:
- rules are JSON (traefik reads them as YAML), each route's text kept from when it changed
  (barehub.route_table): writing 5000 routes costs a join, not a serialisation;
- the file is written in the staging directory and renamed into place, 0640 for the proxy's group (setgid
  directories): traefik sees each version once, finished. barehub keeps it in the hub's own routes/, a
  subdirectory of traefik's directory (root's files are in that one): traefik does not watch subdirectories
  but notices their timestamps change, so the directory is touched after each rename;
- the hub's bookkeeping (targets, JupyterHub's data) lives in its state directory, not in traefik's file;
- group commit: changes that arrive while a write is on its way to traefik go into the next single write,
  so a class spawning at once costs about one traefik rebuild per batch, not one per student. Each
  add_route still returns only when traefik serves ITS route;
- a write counts as applied when traefik's API shows a route it added with its target, or no longer
  shows one it deleted (one request every 5 ms, on a kept-open connection through JupyterHub's aiohttp
  client): traefik applies each read of its directory as a whole; add_route and delete_route return then;
- the next write does not wait for that answer longer than traefik takes to rebuild (write_gap): with 200
  servers starting at once the hub's event loop answered each look at the API 0.1-0.4 s late, while traefik
  had long applied the write; three batches in a row waited 0.42, 0.31 and 0.04 s for those answers before
  the next could go out. A write that reaches traefik while it still rebuilds costs it one read: it keeps
  one pending configuration, not a queue, and applies the newest once the rebuild ends;
- the files are written on the event loop while small (~1 ms at 200 routes): under a class's load a hop
  to a thread waited for the GIL behind the spawns (0.2 s per write at 200 servers at once);
- the hub's own route gets a retry and a transport whose idle connections traefik closes after 1 s, and is
  rewritten at every hub start, so that hub restarts go unnoticed (see proxy_config.HUB_RETRY,
  proxy_config.HUB_KEEPALIVE_TRANSPORT and barehub.hub).
traefik's default certificate (the other ~100 ms: traefik made a fresh RSA key at every rules reload when
it had none) is the installer's: see proxy_config.tls_config.
"""
from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from jupyterhub.utils import url_path_join
from jupyterhub_traefik_proxy import traefik_utils
from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from traitlets import Any, Float, Unicode, default

from barehub.proxy_config import HUB_KEEPALIVE_TRANSPORT, HUB_RETRY, hub_keepalive_transport
from barehub.route_table import RouteTable

RULES_MODE = 0o640  # read by traefik through the directory's group
ROUTES_MODE = 0o600  # the hub's alone
# Up to this size (both files, ~1800 routes) they are written on the event loop: ~1 ms at 200 routes, ~2 ms
# at 1000, where a hop to a thread waited for the GIL behind a class's spawns (0.2 s, 200 servers at once);
# larger ones (9 ms at 5000 routes) in a thread.
INLINE_WRITE_CHARS = 1 << 20
API_TIMEOUT_S = 10  # one request to traefik's API
# A write goes out once the one before is applied, or this long after it (write_gap): about what traefik
# takes to rebuild the table here, 0.16 ms a route (a route added at 1000 routes: 85 ms; at 5000: 0.80 s,
# bench/results.md), so that a stream of changes never makes it read files faster than it can apply them.
WRITE_GAP_MIN_S = 0.05
WRITE_GAP_PER_ROUTE_S = 0.16e-3


class TraefikSilent(Exception):
    """traefik's API did not say whether it serves a route (not running, or an error)."""


@dataclass
class Batch:
    """Changes that go to traefik in one write, and who waits for it."""

    done: asyncio.Future
    adds: list[tuple[str, str]] = field(default_factory=list)  # (routespec, target), in order
    deletes: list[str] = field(default_factory=list)  # routespecs


class BarehubTraefikProxy(TraefikFileProviderProxy):
    """TraefikFileProviderProxy for an external, unprivileged traefik, with group commit."""

    routes_file = Unicode(config=True, help="The hub's bookkeeping of its routes (outside traefik's directory).")
    staging_dir = Unicode(config=True, help="Where the rules file is written before its rename into "
                                            "traefik's directory: on the same mount, not watched by traefik.")
    legacy_rules_file = Unicode(config=True, help="rules.toml, where earlier releases kept routes and bookkeeping: "
                                                  "read once, then removed.")
    poll_interval = Float(0.005, config=True, help="Seconds between two looks at traefik's API for a route.")

    table = Any()
    _api_session: tuple | None = None  # (its event loop, the session): api_session()
    _next: Batch | None = None  # the changes for the next write
    _unapplied: tuple[Batch, ...] = ()  # written, not yet seen applied by traefik; oldest first
    _written_at = 0.0  # when the last write went out
    _writer: asyncio.Task | None = None
    _checker: asyncio.Task | None = None

    # barehub's base config sets routes_file and staging_dir (barehub.hub_config); these defaults, next to
    # the rules, only serve a bare use of the class (each write of the bookkeeping is then a traefik event)
    @default("routes_file")
    def _default_routes_file(self):
        return str(Path(self.dynamic_config_file).parent / "proxy_routes.json")

    @default("staging_dir")
    def _default_staging_dir(self):
        return str(Path(self.dynamic_config_file).parent)

    @default("dynamic_config")
    def _no_dynamic_config(self):
        return {}  # self.table holds it all

    @default("table")
    def _load_table(self):
        """The bookkeeping in routes_file, else (the first start after an upgrade) that of the legacy
        rules.toml; traefik's entries for the routes are made from it."""
        records = None
        try:
            records = json.loads(Path(self.routes_file).read_text())["routes"]
        except FileNotFoundError:
            if self.legacy_rules_file and os.path.exists(self.legacy_rules_file):
                legacy = traefik_utils.TraefikConfigFileHandler(self.legacy_rules_file).load()
                records = legacy.get("jupyterhub", {}).get("routes", {})
                self.log.info("Taking %d routes over from %s", len(records), self.legacy_rules_file)
        return RouteTable.from_bookkeeping(records or {}, self._dynamic_config_for_route)

    # --- upstream's storage hooks, on the table
    async def _get_jupyterhub_dynamic_config(self):
        return {"routes": self.table.route_records()}

    async def get_route(self, routespec):
        routespec = self.validate_routespec(routespec)
        route = self.table.route(traefik_utils.generate_alias(routespec, "router"))
        return route and {key: route[key] for key in ("routespec", "data", "target")}

    async def _apply_dynamic_config(self, traefik_config, jupyterhub_config=None):
        self.table.merge(traefik_config, jupyterhub_config)
        await self._commit()

    async def _delete_dynamic_config(self, traefik_keys, jupyterhub_keys, routespec=None):
        for key in self.table.delete(traefik_keys, jupyterhub_keys):
            self.log.warning("Missing dynamic config, nothing to delete: %s", key)
        await self._commit(deleted=routespec)

    async def delete_route(self, routespec):
        """Returns when traefik no longer serves the route."""
        routespec = self.validate_routespec(routespec)
        await self._delete_dynamic_config(*self._keys_for_route(routespec), routespec=routespec)

    async def add_route(self, routespec, target, data):
        if self._start_future and not self._start_future.done():
            await self._start_future
        routespec = self.validate_routespec(routespec)
        self.table.merge(*self._dynamic_config_for_route(routespec, target, data))
        try:
            await self._commit((routespec, target))
        except TimeoutError:
            self.log.error("Traefik route for %s never appeared.", routespec)
            raise

    # --- group commit
    async def _commit(self, added: tuple[str, str] | None = None, deleted: str | None = None) -> None:
        """Returns when the table as it is now is written and traefik has applied it.

        Changes that arrive while a write is on its way go into the next write, which goes out once traefik
        applied the one before, or write_gap() after it, whichever comes first (_until_writable)."""
        if self._next is None:
            self._next = Batch(asyncio.get_running_loop().create_future())
        batch = self._next
        if added:
            batch.adds.append(added)
        if deleted:
            batch.deletes.append(deleted)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_batches())
        await asyncio.shield(batch.done)  # a cancelled caller leaves the batch to the others

    async def _write_batches(self) -> None:
        """Writes the collected changes, one version at a time; _check_writes tells their waiters when traefik
        applied them."""
        while self._next is not None:
            await self._until_writable()
            batch, self._next = self._next, None
            try:
                rules, routes = self.table.rules_text(), self.table.routes_text()
                if len(rules) + len(routes) <= INLINE_WRITE_CHARS:
                    self._write_files(rules, routes)
                else:
                    await asyncio.to_thread(self._write_files, rules, routes)
            except Exception as e:  # noqa: BLE001 - every waiter of this batch gets the error
                settle(batch, e)
                continue
            self._written_at = time.monotonic()
            self._unapplied = (*self._unapplied, batch)
            if self._checker is None or self._checker.done():
                self._checker = asyncio.create_task(self._check_writes())

    def write_gap(self) -> float:
        """The longest a write waits for traefik to apply the one before (WRITE_GAP_PER_ROUTE_S)."""
        return max(WRITE_GAP_MIN_S, len(self.table.routes) * WRITE_GAP_PER_ROUTE_S)

    async def _until_writable(self) -> None:
        """Until traefik applied every write so far, or write_gap() has passed since the last one."""
        wait = self._written_at + self.write_gap() - time.monotonic()
        if self._unapplied and wait > 0:
            await asyncio.wait([self._unapplied[-1].done], timeout=wait)

    async def _check_writes(self) -> None:
        """Until traefik applied every write: waits for the ones written so far as one (traefik reads its
        directory whole, so the newest version it serves holds every earlier write), then lets their waiters go."""
        while self._unapplied:
            batches, start = self._unapplied, time.monotonic()
            error = None
            try:
                await self._wait_until_applied(batches)
            except Exception as e:  # noqa: BLE001 - every waiter of these batches gets the error
                error = e
            self._unapplied = self._unapplied[len(batches):]
            for batch in batches:
                settle(batch, error)
            self.log.debug("traefik routes: %d writes (%d added, %d deleted) live after %.1f ms",
                           len(batches), sum(len(b.adds) for b in batches), sum(len(b.deletes) for b in batches),
                           (time.monotonic() - start) * 1000)

    def _write_files(self, rules: str, routes: str) -> None:
        """The bookkeeping first (the rules follow from it at a restart), then the rules; runs in a thread."""
        write_replacing(Path(self.routes_file), routes, ROUTES_MODE, Path(self.routes_file).parent)
        write_replacing(Path(self.dynamic_config_file), rules, RULES_MODE, Path(self.staging_dir))
        os.utime(Path(self.dynamic_config_file).parent)  # traefik watches the directory that holds it
        if self.legacy_rules_file and os.path.exists(self.legacy_rules_file):
            os.unlink(self.legacy_rules_file)  # its routes are all in the new files now

    async def _wait_until_applied(self, batches: tuple[Batch, ...]) -> None:
        """traefik applies each read of its directory as a whole: when one route these writes added is served
        with its target (or one they deleted is gone), every one of them is applied. The last such route whose
        state is still the one written is asked for."""
        adds = [add for batch in batches for add in batch.adds]
        deletes = [routespec for batch in batches for routespec in batch.deletes]
        for routespec, target in reversed(adds):
            route = await self.get_route(routespec)
            if route and route["target"] == target:
                await self._wait_for_route(routespec, target)
                return
        for routespec in reversed(deletes):
            if await self.get_route(routespec) is None:
                await self._wait_for_route(routespec, gone=True)
                return

    async def _wait_for_route(self, routespec, target=None, gone=False):
        """Until traefik serves `routespec` (with `target`, when given), or no longer serves it (`gone`):
        one API request per poll_interval, within check_route_timeout."""
        routespec = self.validate_routespec(routespec)
        service = traefik_utils.generate_alias(routespec, "service")
        router = f"{traefik_utils.generate_alias(routespec, 'router')}@{self.provider_name}"
        path = f"/api/http/services/{service}@{self.provider_name}"
        deadline = time.monotonic() + self.check_route_timeout
        warned = False
        while True:
            try:
                if await self._serves(path, router, target) != gone:
                    return
            except TraefikSilent as e:
                if gone:
                    return  # the file is written: traefik reads it when it is back
                if not warned:  # once per route, not at every poll (200 a second)
                    self.log.warning("traefik API %s: %s (asking again until the route is live)", path, e)
                    warned = True
            if time.monotonic() > deadline:
                what = "still served" if gone else "not ready"
                raise TimeoutError(f"Traefik route for {routespec}: {what} after {self.check_route_timeout} s")
            await asyncio.sleep(self.poll_interval)

    def api_session(self) -> aiohttp.ClientSession:
        """This proxy's HTTP session to traefik's API, its connections kept open, one per event loop. barehub's own
        rather than JupyterHub 6's shared client (jupyterhub.httpclient), which a hub of an earlier JupyterHub
        lacks: the upgrade tests run this code on JupyterHub 5.4 as release N-1 (its proxy class failed to load)."""
        loop = asyncio.get_running_loop()
        if self._api_session is None or self._api_session[0] is not loop or self._api_session[1].closed:
            self._api_session = (loop, aiohttp.ClientSession())
        return self._api_session[1]

    async def close_api_session(self) -> None:
        """At the hub's stop (barehub.hub), so that no "Unclosed client session" reaches the journal."""
        if self._api_session is not None and not self._api_session[1].closed:
            await self._api_session[1].close()

    async def _serves(self, path: str, router: str, target: str | None) -> bool:
        """Whether traefik serves the route; TraefikSilent when traefik does not say.

        Asked on a kept-open aiohttp connection (api_session), not through upstream's tornado client: that one
        opens a connection per request and resolves even 127.0.0.1 in a thread, and under a class's load each hop
        to a thread waits for the GIL behind the spawns (measured: 200 servers at once, one request took 0.85 s)."""
        try:
            async with self.api_session().get(
                    url_path_join(self.traefik_api_url, path),
                    headers={"Authorization": aiohttp.encode_basic_auth(self.traefik_api_username,
                                                                        self.traefik_api_password)},
                    ssl=None if self.traefik_api_validate_cert else False,
                    timeout=aiohttp.ClientTimeout(total=API_TIMEOUT_S)) as response:
                if response.status == 404:
                    return False
                if response.status != 200:
                    raise TraefikSilent(f"HTTP {response.status} {response.reason}")
                service = json.loads(await response.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as e:
            raise TraefikSilent(str(e) or type(e).__name__) from None
        urls = [server.get("url") for server in service.get("loadBalancer", {}).get("servers", [])]
        return router in service.get("usedBy", []) and (target is None or target in urls)

    # --- the hub's own route
    async def check_routes(self, user_dict, service_dict, routes=None):
        """At every hub start: rewrite the hub's own route in barehub's current form.

        JupyterHub keeps a hub route whose target did not change, so a route written by an older
        release (without the retry, say) would otherwise stay as it was across upgrades.
        """
        await self.add_hub_route(self.app.hub)
        return await super().check_routes(user_dict, service_dict, routes=None)

    def _dynamic_config_for_route(self, routespec, target, data):
        traefik_config, jupyterhub_config = super()._dynamic_config_for_route(routespec, target, data)
        if data and data.get("hub"):
            # the retry, defined by the installer in barehub.toml: retry while the hub restarts, instead of a 502
            for router in traefik_config["http"]["routers"].values():
                router["middlewares"] = [f"{HUB_RETRY}@file"]
            # the kept-open connections this hub drains without a loss, defined with its route (proxy_config)
            for service in traefik_config["http"]["services"].values():
                service["loadBalancer"]["serversTransport"] = f"{HUB_KEEPALIVE_TRANSPORT}@file"
            traefik_config["http"]["serversTransports"] = {HUB_KEEPALIVE_TRANSPORT: hub_keepalive_transport()}
        return traefik_config, jupyterhub_config


def settle(batch: Batch, error: BaseException | None) -> None:
    """Lets a batch's waiters go, with the error if there is one."""
    if error is None:
        batch.done.set_result(None)
    else:
        batch.done.set_exception(error)
        batch.done.exception()  # retrieved: a batch nobody awaits any more must not log it


def write_replacing(path: Path, text: str, mode: int, staging: Path) -> None:
    """Write `text` to a temp file in `staging` and rename it over `path` (same file system)."""
    fd, tmp = tempfile.mkstemp(dir=staging, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
