"""The hub stops without dropping a request that reached it (barehub.hub.stop_listening_and_drain), on a
real tornado server: what traefik sent gets its answer; what comes after is refused (and traefik retries)."""
import asyncio
import errno
import logging
import socket
import subprocess
import time

import aiohttp

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from barehub.hub import (DRAIN_TIMEOUT_S, LISTEN_BACKLOG, SERVER_POLL_MAX_S, poll_starting_servers_often,
                         stop_listening_and_drain, widen_listen_backlog)
from barehub.proxy_config import HUB_IDLE_S

LOG = logging.getLogger("test")


class Slow(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(0.3)
        self.write("done")


class Fast(tornado.web.RequestHandler):
    def get(self):
        self.write("fast")

    def post(self):
        self.write(b"posted " + self.request.body)


def serve() -> tuple[HTTPServer, int]:
    server = HTTPServer(tornado.web.Application([("/slow", Slow), ("/fast", Fast)]))
    sockets = bind_sockets(0, "127.0.0.1")
    server.add_sockets(sockets)
    return server, sockets[0].getsockname()[1]


def test_a_request_being_handled_is_answered_and_new_connections_are_refused():
    async def scenario():
        server, port = serve()
        pending = asyncio.ensure_future(AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/slow"))
        await asyncio.sleep(0.1)  # the handler is running
        await stop_listening_and_drain(server, LOG)
        assert (await pending).body == b"done"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
    asyncio.run(scenario())


def test_a_connection_waiting_in_the_listen_backlog_is_answered_not_reset():
    async def scenario():
        server, port = serve()
        waiting = socket.create_connection(("127.0.0.1", port), timeout=5)  # the loop has not accepted it
        waiting.sendall(b"GET /slow HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        drained = asyncio.ensure_future(stop_listening_and_drain(server, LOG))
        answer = await asyncio.get_running_loop().run_in_executor(None, read_all, waiting)
        await drained
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"done")
    asyncio.run(scenario())


def read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    return data


def listen_backlog(port: int) -> int:
    """A listening socket's backlog, as `ss -ltn` shows it (its Send-Q column)."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, check=True).stdout
    return int(out.split()[2])


def test_the_hubs_listen_backlog_holds_a_class_of_connections_not_tornados_128():
    async def scenario():
        server, port = serve()
        assert listen_backlog(port) == 128  # tornado's default, as JupyterHub listens
        widen_listen_backlog(server, LISTEN_BACKLOG)
        assert listen_backlog(port) == LISTEN_BACKLOG
        # a connection is still taken and answered
        answer = await AsyncHTTPClient().fetch(f"http://127.0.0.1:{port}/slow")
        assert answer.body == b"done"
        server.stop()
    asyncio.run(scenario())


def exchange(sock: socket.socket, request: bytes) -> tuple[bytes, bytes]:
    """One request on a kept-alive connection: its response's head and body (by Content-Length)."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


GET = b"GET /fast HTTP/1.1\r\nHost: hub\r\n\r\n"
POST = b"POST /fast HTTP/1.1\r\nHost: hub\r\nContent-Length: 5\r\n\r\nspawn"


def test_a_request_on_a_kept_alive_connection_while_stopping_is_answered_and_its_connection_closed_after():
    """traefik keeps connections to the hub open (proxy_config.HUB_KEEPALIVE_TRANSPORT): one it sends a request on
    after the hub stopped listening gets its answer, marked as the connection's last, and is then closed by the hub,
    so traefik does not reuse it; the stop ends once no connection is left."""
    async def scenario():
        server, port = serve()
        loop = asyncio.get_running_loop()
        kept = socket.create_connection(("127.0.0.1", port), timeout=5)
        head, body = await loop.run_in_executor(None, exchange, kept, GET)
        assert body == b"fast" and b"connection: close" not in head.lower()  # kept alive
        drained = asyncio.ensure_future(stop_listening_and_drain(server, LOG))
        await asyncio.sleep(0.3)
        assert not drained.done()  # a connection is still open: the hub does not close it under traefik
        head, body = await loop.run_in_executor(None, exchange, kept, POST)
        assert head.startswith(b"HTTP/1.1 200") and body == b"posted spawn"
        assert b"connection: close" in head.lower()
        assert await loop.run_in_executor(None, kept.recv, 1) == b""  # closed by the hub after its answer
        await asyncio.wait_for(drained, 2)
    asyncio.run(scenario())


def test_an_idle_kept_alive_connection_is_left_for_the_client_to_close():
    """An idle connection is not closed by the stopping hub while its client (traefik: after HUB_IDLE_S) may still
    send on it; the stop ends once the client has closed it."""
    async def scenario():
        server, port = serve()
        loop = asyncio.get_running_loop()
        kept = socket.create_connection(("127.0.0.1", port), timeout=5)
        await loop.run_in_executor(None, exchange, kept, GET)
        started = loop.time()
        drained = asyncio.ensure_future(stop_listening_and_drain(server, LOG))
        await asyncio.sleep(HUB_IDLE_S)
        kept.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing to read, not an EOF: still open
            kept.recv(1)
        kept.close()  # traefik's idle timeout
        await asyncio.wait_for(drained, 2)
        assert loop.time() - started < DRAIN_TIMEOUT_S
    asyncio.run(scenario())


def looks_at_a_starting_server(monkeypatch, seconds: float) -> list[float]:
    """The gaps between JupyterHub's looks at a server that does not answer for `seconds`
    (jupyterhub.utils.wait_for_http_server, as JupyterHub waits for every server it started)."""
    from jupyterhub import utils

    looks: list[float] = []

    async def fetch(url, **kwargs):
        looks.append(time.monotonic())
        raise aiohttp.ClientOSError(errno.ECONNREFUSED, "refused")  # not listening yet

    monkeypatch.setattr(utils, "fetch", fetch)
    with pytest.raises(asyncio.TimeoutError):
        asyncio.run(utils.wait_for_http_server("http://127.0.0.1:9/", timeout=seconds))
    return [b - a for a, b in zip(looks, looks[1:])]


def test_the_hub_looks_at_a_starting_server_at_least_every_second(monkeypatch):
    """barehub.hub.poll_starting_servers_often: a server that comes up after some seconds is seen within ~1 s,
    where upstream's waits grow to up to 5 s (seen ~1.7 s late on average)."""
    from jupyterhub import utils

    monkeypatch.setattr(utils, "exponential_backoff", utils.exponential_backoff)  # put back after the test
    poll_starting_servers_often()
    gaps = looks_at_a_starting_server(monkeypatch, 8)
    assert max(gaps) <= SERVER_POLL_MAX_S + 0.2, gaps
    assert len(gaps) >= 8 / SERVER_POLL_MAX_S  # (uniform waits of 0-1 s: ~16 looks in 8 s)


def test_the_other_backoffs_of_jupyterhub_keep_upstreams_waits(monkeypatch):
    from jupyterhub import proxy, spawner, utils

    monkeypatch.setattr(utils, "exponential_backoff", utils.exponential_backoff)
    poll_starting_servers_often()
    poll_starting_servers_often()  # (twice: still one layer over upstream's)
    assert utils.exponential_backoff.upstream is spawner.exponential_backoff is proxy.exponential_backoff
