"""barehub.batch_singleuser holds its server's port from before it reports it to the hub until the server serves on
it: another user on the compute node can take the port at no moment in between (she could otherwise receive the
hub's traffic for /user/NAME/, OAuth codes included). Checked with a stand-in server that binds as jupyter-server
does, in this process, and with the real jupyterhub-singleuser against a stand-in hub.

"Another user" here is a socket of this process: the same uid shares nothing more than another uid's would,
as no socket sets SO_REUSEPORT. Sockets are read from /proc/net/tcp{,6}: a socket's inode says which it is.
"""
import errno
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from shutil import which
from urllib.parse import urlparse

import pytest
import requests
import tornado.netutil
import tornado.tcpserver

from barehub import batch_singleuser
from barehub.batch_singleuser import hand_over, hold_port, parse_range
from tests.unit.conftest import PARSERS


def has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


IPV6 = has_ipv6()
# where a squatter would bind: every address, the loopback, and their IPv6 twins where this machine has IPv6
SQUATTER_ADDRESSES = [(socket.AF_INET, "0.0.0.0"), (socket.AF_INET, "127.0.0.1")] + \
    ([(socket.AF_INET6, "::"), (socket.AF_INET6, "::1")] if IPV6 else [])


def others_can_listen(port: int) -> list[str]:
    """The addresses where another socket, with SO_REUSEADDR or without, could bind `port` and listen (it lets
    go at once)."""
    taken = []
    for reuse in (True, False):
        for family, address in SQUATTER_ADDRESSES:
            with socket.socket(family) as s:
                if reuse:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((address, port))
                    s.listen()
                except OSError as e:
                    assert e.errno == errno.EADDRINUSE, e
                    continue
                taken.append(f"{address} (SO_REUSEADDR {reuse})")
    return taken


def listeners(port: int) -> set[int]:
    """The inodes of the sockets listening on `port` (any address, any process, this network namespace)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(int(fields[9]))
    return inodes


def sockets_of(pid: int) -> set[int]:
    """The inodes of a process's sockets (its /proc/PID/fd links "socket:[INODE]")."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            link = os.readlink(fd)
        except FileNotFoundError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[len("socket:["):-1]))
    return inodes


def a_free_range(size: int = 20) -> str:
    """A few ports from one the system just gave out (another program may hold some: the job skips them)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        low = s.getsockname()[1]
    return f"{low}-{min(low + size - 1, 65535)}"


class Hub(http.server.BaseHTTPRequestHandler):
    """The hub's API as a server job meets it: the port report is recorded with who could listen on that port
    at that moment; GETs answer as JupyterHub 6.1.1; other POSTs (activity) are taken."""
    reports: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path.endswith("/batchspawner"):
            port = body["port"]
            Hub.reports.append({"port": port, "others": others_can_listen(port), "listeners": listeners(port)})
        self.send_response(201)
        self.end_headers()

    def do_GET(self):
        self.send_response(200)
        self.send_header("X-JupyterHub-Version", "6.1.1")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"version": "6.1.1"}')

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, hub_api_server):
    Hub.reports = []
    hub_api_server(Hub)
    monkeypatch.setenv("JUPYTERHUB_SERVICE_URL", "http://0.0.0.0:0/user/kim/")  # batchspawner's ip and port 0
    monkeypatch.setenv("BAREHUB_PORT_RANGE", a_free_range())
    return Hub


@pytest.fixture
def tornado_restored(monkeypatch):
    """hand_over replaces bind_sockets in these modules: put back after the test."""
    for module in (tornado.netutil, tornado.tcpserver, sys.modules.get("jupyter_server.serverapp")):
        if module is not None:
            monkeypatch.setattr(module, "bind_sockets", module.bind_sockets)


def the_report(hub, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while not hub.reports:
        assert time.monotonic() < deadline, "no port report"
        time.sleep(0.05)
    [report] = hub.reports
    return report


def answer(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=1)
    except requests.RequestException:
        return None


# --- a stand-in server, run by batch_singleuser.main in this process as it runs jupyterhub-singleuser
SEEN: dict = {}


def stand_in_server() -> None:
    """What jupyter-server does with its port: a free-port check (bind and close: _find_http_port), then
    HTTPServer.listen(port, ip) (_bind_http_server_tcp), both through tornado's bind_sockets. Serves until
    GET /stop (20 s at most)."""
    import asyncio

    from tornado.httpserver import HTTPServer
    from tornado.web import Application, RequestHandler

    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    SEEN.clear()
    SEEN["argv"] = sys.argv[:]

    async def serve():
        stop = asyncio.Event()

        class Page(RequestHandler):
            def get(self):
                self.write("kim's server")
                if self.request.path == "/stop":
                    stop.set()

        for sock in tornado.netutil.bind_sockets(url.port, url.hostname):
            sock.close()
        SEEN["others after the check"] = others_can_listen(url.port)  # the moment a re-bind left the port free
        server = HTTPServer(Application([(r"/.*", Page)]))
        server.listen(url.port, url.hostname)
        SEEN["listeners"] = listeners(url.port)
        try:
            await asyncio.wait_for(stop.wait(), 20)
        finally:
            server.stop()

    asyncio.run(serve())


def test_the_port_is_held_from_before_the_report_until_the_server_serves_on_that_very_socket(
        hub, tornado_restored, tmp_path, monkeypatch):
    script = tmp_path / "stand-in-server"
    script.write_text(f"#!{sys.executable}\nimport os, sys\n"
                      f"sys.modules[os.environ['BAREHUB_TEST_MODULE']].stand_in_server()\n")
    script.chmod(0o755)
    monkeypatch.setenv("BAREHUB_TEST_MODULE", __name__)
    monkeypatch.setattr(sys, "argv", ["batch_singleuser", str(script)])
    job = threading.Thread(target=batch_singleuser.main, daemon=True)
    job.start()
    port = 0
    try:
        report = the_report(hub)
        port = report["port"]
        assert port in parse_range(os.environ["BAREHUB_PORT_RANGE"])
        assert report["others"] == [] and report["listeners"], report  # held when the hub heard of it
        deadline = time.monotonic() + 15
        while (page := answer(f"http://127.0.0.1:{port}/")) is None or page.status_code != 200:
            assert others_can_listen(port) == [], "the port was free before the server served"
            assert time.monotonic() < deadline, "the server did not serve"
        assert page.text == "kim's server"
        assert SEEN["others after the check"] == []
        assert SEEN["listeners"] == listeners(port) == report["listeners"]  # the very sockets reported, no others
        assert SEEN["argv"] == [str(script), "--ServerApp.port_retries=0"]
        assert urlparse(os.environ["JUPYTERHUB_SERVICE_URL"]).port == port
    finally:
        if port:
            answer(f"http://127.0.0.1:{port}/stop")
        job.join(10 if port else 0)
    assert not job.is_alive()


def test_only_a_wildcard_bind_of_the_held_port_gets_the_held_sockets(tornado_restored):
    port, held = hold_port(parse_range(a_free_range()))
    try:
        hand_over(port, held)
        for address in (None, "", "0.0.0.0", "::"):
            got = tornado.tcpserver.bind_sockets(port, address)
            assert {s.getsockname()[:2] for s in got} == {s.getsockname()[:2] for s in held}
            for sock in got:
                sock.close()  # a copy: the port stays held
        assert others_can_listen(port) == []
        [ipv4] = tornado.netutil.bind_sockets(port, "", family=socket.AF_INET)
        assert ipv4.getsockname() == ("0.0.0.0", port)
        ipv4.close()
        with pytest.raises(OSError) as e:  # a specific address: tornado's own bind, which the held port refuses
            tornado.netutil.bind_sockets(port, "127.0.0.1")
        assert e.value.errno == errno.EADDRINUSE
        [other] = tornado.netutil.bind_sockets(0, "127.0.0.1")  # another port: tornado's own bind
        assert other.getsockname()[1] != port
        other.close()
    finally:
        for sock in held:
            sock.close()


def test_a_port_someone_listens_on_at_any_address_is_skipped_and_one_bound_first_cannot_listen_once_held():
    for family, address in SQUATTER_ADDRESSES[1:]:  # specific addresses (0.0.0.0: test_slurm_dropin's test_port_range)
        with socket.socket(family) as squatter:
            squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            squatter.bind((address, 0))
            squatter.listen()
            port = squatter.getsockname()[1]
            with pytest.raises(RuntimeError, match="no free port"):
                hold_port(range(port, port + 1))
    with socket.socket() as early:  # bound before the job, with SO_REUSEADDR, not yet listening
        early.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        early.bind(("127.0.0.1", 0))
        port = early.getsockname()[1]
        held_port, held = hold_port(range(port, port + 1))
        try:
            with pytest.raises(OSError) as e:
                early.listen()
            assert e.value.errno == errno.EADDRINUSE
        finally:
            for sock in held:
                sock.close()


SINGLEUSER = which("jupyterhub-singleuser", path=str(Path(sys.executable).parent))


@pytest.mark.skipif(SINGLEUSER is None, reason="jupyterhub-singleuser is not installed next to this python")
def test_the_real_jupyterhub_singleuser_serves_on_the_socket_the_job_held_when_it_reported_its_port(hub, tmp_path):
    """batch_singleuser as a Slurm job runs it, in a process of its own. Measured here: the report 0.7 s after
    the job started, JupyterLab's server answering 2.5 to 2.8 s after it (the window the port used to be free)."""
    env = {key: os.environ[key] for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL",
                                            "BAREHUB_PORT_RANGE")}
    env.update({"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
                "JUPYTERHUB_SERVICE_PREFIX": "/user/kim/", "JUPYTERHUB_USER": "kim", "JUPYTERHUB_BASE_URL": "/",
                "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-kim",
                "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/kim/oauth_callback",
                "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data"),
                "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")})
    argv = [sys.executable, "-m", "barehub.batch_singleuser", "jupyterhub-singleuser"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = tmp_path / "job.log"
    with open(log, "wb") as out:
        job = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                               start_new_session=True)
    try:
        report = the_report(hub, timeout=15)
        port = report["port"]
        assert report["others"] == [] and report["listeners"], report
        deadline = time.monotonic() + 30
        while (page := answer(f"http://127.0.0.1:{port}/user/kim/api")) is None or page.status_code != 200:
            assert job.poll() is None, log.read_text()
            assert others_can_listen(port) == [], "the port was free before the server served"
            assert time.monotonic() < deadline, log.read_text()
        assert "version" in page.json()
        assert listeners(port) == report["listeners"]  # jupyter-server serves on the sockets held at the report
        assert report["listeners"] <= sockets_of(job.pid)  # and they are the job's
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        try:
            job.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(10)


PROBE = """#!{python}
import sys
import jupyter_server.serverapp  # what jupyterhub-singleuser imports first
open({out!r}, "w").write(repr({parsers!r} in sys.modules))
"""


def test_the_jobs_server_imports_jupyter_server_without_building_the_iri_parsers(hub, tmp_path):
    """barehub.lazy_imports in the job: jupyter-server's imports skip rfc3987_syntax's 0.8-1.2 s of parser builds
    (measured with -X importtime: 1.84 s to import jupyter_server.serverapp, 0.59 s with the stand-in)."""
    out = tmp_path / "built"
    probe = tmp_path / "bin" / "probe-singleuser"
    probe.parent.mkdir()
    probe.write_text(PROBE.format(python=sys.executable, out=str(out), parsers=PARSERS))
    probe.chmod(0o755)
    env = {key: os.environ[key] for key in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_SERVICE_URL",
                                            "BAREHUB_PORT_RANGE")}
    env.update({"PATH": f"{probe.parent}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": os.pathsep.join(sys.path)})
    subprocess.run([sys.executable, "-m", "barehub.batch_singleuser", probe.name], env=env, cwd=tmp_path,
                   timeout=60, check=True)
    assert the_report(hub)["port"]
    assert out.read_text() == "False"
