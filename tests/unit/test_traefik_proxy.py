"""barehub's proxy class against a real traefik (the pinned binary, on loopback): routes serve when
add_route returns, group commit, only finished files in traefik's directory, the default certificate,
and the move from and back to the rules.toml of earlier releases."""
from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import toml
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from traitlets.config import Config

from barehub import certificates, migrations, proxy_config, release_change, releases
from barehub.base.paths import Paths
from barehub.settings import Settings
from barehub.traefik_proxy import BarehubTraefikProxy

TRAEFIK = Path(sys.executable).parent / "traefik"
PASSWORD = "test-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Traefik:
    """traefik as barehub runs it: the file provider on a watched directory, throttle 0."""

    def __init__(self, root: Path, log_level: str = "INFO"):
        self.paths = Paths.from_prefix(root)
        for d in (self.paths.traefik_dynamic_dir, self.paths.traefik_routes_dir, self.paths.state):
            d.mkdir(parents=True, exist_ok=True)
        self.web, self.tls, self.api = free_port(), free_port(), free_port()
        static = {"entryPoints": {"web": {"address": f"127.0.0.1:{self.web}"},
                                  "websecure": {"address": f"127.0.0.1:{self.tls}", "http": {"tls": {}}},
                                  "traefik": {"address": f"127.0.0.1:{self.api}"}},
                  "api": {"dashboard": False}, "log": {"level": log_level},
                  "metrics": {"prometheus": {"entryPoint": "traefik"}},
                  "providers": {"providersThrottleDuration": "0s",
                                "file": {"directory": str(self.paths.traefik_dynamic_dir), "watch": True}}}
        (root / "traefik.yaml").write_text(json.dumps(static))
        self.log = root / "traefik.log"
        self.proc = subprocess.Popen([str(TRAEFIK), f"--configfile={root / 'traefik.yaml'}"],
                                     stdout=self.log.open("w"), stderr=subprocess.STDOUT)

    def proxy(self, **extra) -> BarehubTraefikProxy:
        config = Config({"TraefikProxy": {"traefik_api_url": f"http://127.0.0.1:{self.api}",
                                          "traefik_api_username": "api", "traefik_api_password": PASSWORD,
                                          "traefik_api_hashed_password": proxy_hash(), "should_start": False,
                                          "traefik_entrypoint": "web", "traefik_api_entrypoint": "traefik",
                                          "check_route_timeout": 10},
                         "TraefikFileProviderProxy": {"dynamic_config_file": str(self.paths.traefik_rules)},
                         "BarehubTraefikProxy": {"routes_file": str(self.paths.proxy_routes),
                                                 "staging_dir": str(self.paths.traefik_routes_dir),
                                                 "legacy_rules_file": str(self.paths.traefik_legacy_rules),
                                                 **extra}})
        return BarehubTraefikProxy(config=config)

    def reloads(self) -> int:
        body = urllib.request.urlopen(f"http://127.0.0.1:{self.api}/metrics", timeout=5).read().decode()
        return int(float(re.search(r"^traefik_config_reloads_total (\S+)$", body, re.M).group(1)))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def proxy_hash() -> str:
    from barehub.hub_config import api_password_hash

    return api_password_hash(PASSWORD)


def recorded_writes(proxy: BarehubTraefikProxy) -> list[float]:
    """When each of the proxy's writes of its files went out, from now on."""
    writes = []
    write = proxy._write_files
    proxy._write_files = lambda *a: (writes.append(time.monotonic()), write(*a))[1]
    return writes


@pytest.fixture
def traefik(tmp_path):
    t = Traefik(tmp_path)
    try:
        yield t
    finally:
        t.stop()


class Named(tornado.web.RequestHandler):
    def get(self, *_):
        self.write(self.settings["name"])


def backend(name: str) -> str:
    """A server on loopback answering its name on every path; returns its URL."""
    server = HTTPServer(tornado.web.Application([(r"/.*", Named)], name=name))
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return f"http://127.0.0.1:{sockets[0].getsockname()[1]}"


async def through(traefik: Traefik, path: str) -> str | None:
    r = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{traefik.web}{path}", raise_error=False)
    return r.body.decode() if r.code == 200 else None


async def started(traefik: Traefik, **extra) -> BarehubTraefikProxy:
    """The proxy as the hub starts it with should_start False: the API route written, traefik answering."""
    proxy = traefik.proxy(**extra)
    await ready(proxy)
    return proxy


async def ready(proxy):
    """Constructed inside the event loop with should_start False, the class sets itself up (writes the API
    route, waits for traefik): JupyterHub awaits that before any route change, so does this."""
    if proxy._start_future:
        await proxy._start_future


def test_each_added_route_serves_when_add_route_returns_and_a_class_costs_few_rebuilds(traefik):
    async def scenario():
        proxy = await started(traefik)
        writes = recorded_writes(proxy)
        before = traefik.reloads()
        targets = {f"/user/s{i}/": backend(f"s{i}") for i in range(60)}

        async def add(spec, target):
            await proxy.add_route(spec, target, {"user": spec})
            return await through(traefik, spec)  # at once: no wait between the return and the request

        served = await asyncio.gather(*(add(spec, target) for spec, target in targets.items()))
        assert served == [f"s{i}" for i in range(60)]
        assert len(writes) <= 5, f"60 adds at once took {len(writes)} writes"
        assert traefik.reloads() - before <= len(writes)
        routes = await proxy.get_all_routes()
        assert {spec: r["target"] for spec, r in routes.items()} == targets
        assert routes["/user/s1/"]["data"] == {"user": "/user/s1/"}
    asyncio.run(scenario())


def test_traefik_sees_only_finished_files_one_reload_per_write(traefik):
    async def scenario():
        proxy = await started(traefik)
        before = traefik.reloads()
        for i in range(5):
            await proxy.add_route(f"/user/one{i}/", backend(f"one{i}"), {})
        await asyncio.sleep(0.5)  # a late reload would show here
        assert traefik.reloads() - before == 5
        assert sorted(p.name for p in traefik.paths.traefik_dynamic_dir.iterdir()) == ["routes"]
        assert sorted(p.name for p in traefik.paths.traefik_routes_dir.iterdir()) == ["rules.yaml"]  # no temp file
        mode = os.stat(traefik.paths.traefik_rules).st_mode & 0o777
        assert (mode, os.stat(traefik.paths.proxy_routes).st_mode & 0o777) == (0o640, 0o600)
        assert "jupyterhub" not in json.loads(traefik.paths.traefik_rules.read_text())  # bookkeeping is apart
    asyncio.run(scenario())


def test_a_new_target_is_served_when_add_route_returns_and_a_deleted_route_is_gone(traefik):
    async def scenario():
        proxy = await started(traefik)
        await proxy.add_route("/user/a/", backend("old"), {})
        await proxy.add_route("/user/a/", backend("new"), {})
        assert await through(traefik, "/user/a/") == "new"
        await proxy.delete_route("/user/a/")
        assert await through(traefik, "/user/a/") is None  # at once: delete_route returns once it is gone
        assert await proxy.get_route("/user/a/") is None
    asyncio.run(scenario())


def answered_late(proxy: BarehubTraefikProxy, delay: float) -> None:
    """The hub's event loop, busy with a class, reads each answer of traefik's API `delay` seconds late (0.1-0.4 s
    with 200 servers starting at once)."""
    serves = proxy._serves

    async def late(*args):
        await asyncio.sleep(delay)
        return await serves(*args)

    proxy._serves = late


async def until_served(traefik: Traefik, path: str, name: str, within: float) -> None:
    deadline = time.monotonic() + within
    while await through(traefik, path) != name:
        assert time.monotonic() < deadline, f"{path} not served within {within} s"
        await asyncio.sleep(0.01)


def test_a_write_goes_out_while_the_one_before_waits_for_a_late_answer(traefik):
    async def scenario():
        proxy = await started(traefik)
        answered_late(proxy, 2)
        first = asyncio.ensure_future(proxy.add_route("/user/a/", backend("a"), {}))
        await asyncio.sleep(0.2)  # a is written; the answer that says so comes 2 s late
        second = asyncio.ensure_future(proxy.add_route("/user/b/", backend("b"), {}))
        await until_served(traefik, "/user/b/", "b", within=1.5)
        assert not first.done()  # b went out before a's answer came
        await asyncio.gather(first, second)  # each returns once its route is served
        assert [await through(traefik, "/user/a/"), await through(traefik, "/user/b/")] == ["a", "b"]
    asyncio.run(scenario())


def test_a_stream_of_changes_is_written_no_faster_than_traefik_rebuilds(traefik):
    async def scenario():
        proxy = await started(traefik)
        answered_late(proxy, 1)
        writes = recorded_writes(proxy)
        adds = []
        for i in range(30):  # one every 10 ms for 0.3 s, none of them answered yet
            adds.append(asyncio.ensure_future(proxy.add_route(f"/user/t{i}/", backend(f"t{i}"), {})))
            await asyncio.sleep(0.01)
        await asyncio.gather(*adds)
        gaps = [b - a for a, b in zip(writes, writes[1:])]
        assert 2 <= len(writes) <= 9 and min(gaps) >= proxy.write_gap() * 0.9, (len(writes), gaps)
        for i in range(30):
            assert await through(traefik, f"/user/t{i}/") == f"t{i}"
    asyncio.run(scenario())


def test_a_cancelled_spawn_does_not_fail_the_others_in_its_batch(traefik):
    async def scenario():
        proxy = await started(traefik)
        first = asyncio.ensure_future(proxy.add_route("/user/x/", backend("x"), {}))
        second = asyncio.ensure_future(proxy.add_route("/user/y/", backend("y"), {}))
        await asyncio.sleep(0)
        first.cancel()
        await second
        assert await through(traefik, "/user/y/") == "y"
    asyncio.run(scenario())


def test_while_traefik_is_down_an_add_fails_in_time_with_one_warning_and_a_delete_does_not_wait(traefik, caplog):
    async def scenario():
        proxy = await started(traefik, poll_interval=0.005)
        proxy.check_route_timeout = 1
        traefik.stop()
        with caplog.at_level("WARNING"):
            with pytest.raises(TimeoutError):
                await proxy.add_route("/user/down/", backend("down"), {})
            proxy.check_route_timeout = 20  # a delete that waited for traefik would wait this long
            start = time.monotonic()
            await proxy.delete_route("/user/down/")
            assert time.monotonic() - start < 5
        warnings = [r for r in caplog.records if "traefik API" in r.getMessage()]
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # not one per poll (~200 in that second)
        assert "/user/down/" not in traefik.paths.traefik_rules.read_text()  # the delete is written all the same
    asyncio.run(scenario())


def test_an_api_that_refuses_the_hub_fails_an_add_in_time_with_one_warning_naming_its_answer(traefik, caplog):
    async def scenario():
        proxy = await started(traefik)
        proxy.check_route_timeout = 1
        proxy.traefik_api_password = "not-the-password"  # e.g. a hash the installer rewrote without the hub
        with caplog.at_level("WARNING"):
            with pytest.raises(TimeoutError):
                await proxy.add_route("/user/refused/", backend("refused"), {})
        warnings = [r.getMessage() for r in caplog.records if "traefik API" in r.getMessage()]
        assert len(warnings) == 1 and "401" in warnings[0], warnings
    asyncio.run(scenario())


class Counting:
    """A TCP forwarder in front of traefik's API that counts the connections the hub opens."""

    def __init__(self, port: int):
        self.port, self.connections = port, 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self.forward, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def forward(self, client_reader, client_writer):
        self.connections += 1
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:  # traefik not up yet: the hub's client sees the connection closed, and asks again
            client_writer.close()
            return

        async def pipe(src, dst):
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer), return_exceptions=True)


def test_a_class_is_watched_on_one_kept_open_connection_to_traefik(traefik):
    """Each write is watched with requests to traefik's API every 5 ms: on a connection kept open (JupyterHub's
    aiohttp client), not a new one per request, whose address the tornado client resolved in a thread."""
    async def scenario():
        counting = Counting(traefik.api)
        proxy = traefik.proxy()
        proxy.traefik_api_url = await counting.start()
        await ready(proxy)
        counting.connections = 0  # those of the start-up (upstream's own requests)
        for i in range(5):
            await proxy.add_route(f"/user/k{i}/", backend(f"k{i}"), {})
            assert await through(traefik, f"/user/k{i}/") == f"k{i}"
        assert counting.connections == 1
    asyncio.run(scenario())


def test_a_restarted_hub_finds_its_routes_and_traefik_serves_them_throughout(traefik):
    async def scenario():
        proxy = await started(traefik)
        await proxy.add_route("/user/keep/", backend("keep"), {"user": "keep"})
        again = await started(traefik)  # a new hub process: from the bookkeeping in state/
        assert (await again.get_route("/user/keep/"))["target"] == (await proxy.get_route("/user/keep/"))["target"]
        assert await through(traefik, "/user/keep/") == "keep"
    asyncio.run(scenario())


def test_routes_of_an_earlier_release_are_taken_over_and_given_back_without_a_gap(traefik):
    """rules.toml as jupyterhub-traefik-proxy 2.1 writes it (routes and bookkeeping in one file) -> barehub's
    files -> rules.toml again for a rollback, each loaded by the other side, while requests go on."""
    from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy

    async def scenario():
        target = backend("legacy")
        old = TraefikFileProviderProxy(config=Config({
            "TraefikProxy": {"traefik_api_url": f"http://127.0.0.1:{traefik.api}", "traefik_api_username": "api",
                             "traefik_api_password": PASSWORD, "traefik_api_hashed_password": proxy_hash(),
                             "should_start": False, "traefik_entrypoint": "web",
                             "traefik_api_entrypoint": "traefik"},
            # where that release kept it: in traefik's directory itself
            "TraefikFileProviderProxy": {"dynamic_config_file": str(traefik.paths.traefik_dynamic_dir / "rules.toml")}}))
        await ready(old)
        await old.add_route("/user/legacy/", target, {"user": "legacy"})
        failures, stop = [], asyncio.Event()

        async def steady():
            while not stop.is_set():
                r = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{traefik.web}/user/legacy/", raise_error=False)
                if r.code != 200 or r.body != b"legacy":
                    failures.append(f"{time.strftime('%H:%M:%S')} {r.code} {r.body[:80]!r} "
                                    f"{sorted(p.name for p in traefik.paths.traefik_dynamic_dir.iterdir())}")
                await asyncio.sleep(0.005)

        loop = asyncio.ensure_future(steady())
        migrations.take_dynamic_dir_back(traefik.paths, Settings(proxy_user="root"), "root")  # the upgrade's installer
        assert traefik.paths.traefik_legacy_rules.exists()
        new = await started(traefik)
        assert (await new.get_route("/user/legacy/"))["target"] == target
        assert not traefik.paths.traefik_legacy_rules.exists()
        await asyncio.sleep(0.3)
        gave_back = release_change.give_routes_back_to(traefik.paths, releases.Release("2026.11.22", "envs/none"))
        assert release_change.give_layout_back_to(traefik.paths, releases.Release("2026.11.22", "envs/none"))
        again = TraefikFileProviderProxy(config=old.config)
        await ready(again)
        assert (await again.get_route("/user/legacy/"))["target"] == target
        await asyncio.sleep(0.3)
        stop.set()
        await loop
        assert gave_back and not traefik.paths.traefik_routes_dir.exists() and not traefik.paths.proxy_routes.exists()
        assert failures == []
    asyncio.run(scenario())


def test_traefik_serves_the_default_certificate_and_makes_none_of_its_own(tmp_path):
    traefik = Traefik(tmp_path, log_level="DEBUG")
    try:
        default_certificate_scenario(traefik)
    finally:
        traefik.stop()


def default_certificate_scenario(traefik: Traefik) -> None:
    fallback = "fallback to the internal generated certificate"  # traefik's debug line as it makes an RSA key
    cert, key = certificates.default_certificate(traefik.paths)
    assert certificates.default_certificate(traefik.paths) == (cert, key)  # made once
    assert os.stat(traefik.paths.traefik_default_tls).st_mode & 0o777 == 0o600

    async def scenario():
        proxy = await started(traefik)
        await proxy.add_route("/user/t/", backend("t"), {})
        made_before = traefik.log.read_text().count(fallback)
        assert made_before >= 1  # without a default certificate, traefik makes one at each reload
        (traefik.paths.traefik_dynamic_dir / "tls.toml").write_text(toml.dumps(proxy_config.tls_config(cert, key)))
        await asyncio.sleep(0.5)
        for i in range(3):
            await proxy.add_route(f"/user/t{i}/", backend(f"t{i}"), {})
        return made_before
    made_before = asyncio.run(scenario())
    served = certificates.served_certificate("127.0.0.1", traefik.tls, "anything.example")
    assert served.subject == f"CN={certificates.DEFAULT_CERT_NAME}"
    assert traefik.log.read_text().count(fallback) == made_before
