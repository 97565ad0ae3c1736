"""The hub stops without dropping a request that reached it (barehub.hub.stop_listening_and_drain), on a
real tornado server: what traefik sent gets its answer; what comes after is refused (and traefik retries)."""
import asyncio
import logging
import socket
import subprocess

import pytest
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from barehub.hub import LISTEN_BACKLOG, stop_listening_and_drain, widen_listen_backlog

LOG = logging.getLogger("test")


class Slow(tornado.web.RequestHandler):
    async def get(self):
        await asyncio.sleep(0.3)
        self.write("done")


def serve() -> tuple[HTTPServer, int]:
    server = HTTPServer(tornado.web.Application([("/slow", Slow)]))
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
