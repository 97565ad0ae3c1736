"""barehub.hub_outage: a user's server goes on answering her while the hub is away, and only her.

The real jupyterhub-singleuser (with the env's config, which enables barehub's extensions) against a stand-in for
the hub's API that the test stops and starts again on the same port; HubAuth's cache kept 1 s instead of 300 s, so
an answer expires within the outage as one did in the failed upgrade of a full test run.
"""
from __future__ import annotations

import asyncio
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from jupyterhub.services.auth import HubAuth
from tornado.web import HTTPError

from barehub.hub_outage import keep_answers_through_outages
from tests.unit.conftest import SERVER_CONFIG, free_port

KIM, OTHER = "kim-token", "another-token"


class StandInHub(http.server.BaseHTTPRequestHandler):
    """The hub's API as a user's server meets it: `tokens` says whom each token it knows belongs to."""
    tokens: dict[str, str | None] = {}  # None: the hub refuses the request (400)

    def do_GET(self):
        token = self.headers.get("Authorization", "").removeprefix("token ")
        if self.path.endswith("/api/user") and StandInHub.tokens.get(token, "") is None:
            self.reply(400, {"status": 400, "message": "a request the hub refuses"})
        elif self.path.endswith("/api/user") and token in StandInHub.tokens:
            user = StandInHub.tokens[token]
            self.reply(200, {"kind": "user", "name": user, "admin": False, "groups": [], "session_id": "",
                             "scopes": [f"access:servers!user={user}", f"read:users!user={user}"]})
        elif self.path.endswith("/api/user"):
            self.reply(403, {"status": 403, "message": "no such token"})
        else:
            self.reply(200, {"version": "6.1.1"})

    def do_POST(self):  # activity reports
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.reply(201, {})

    def reply(self, status: int, body: dict) -> None:
        self.send_response(status)
        self.send_header("X-JupyterHub-Version", "6.1.1")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


class Hub:
    """The stand-in hub on a fixed loopback port, stopped and started again like a restarting hub."""

    def __init__(self):
        self.port = free_port()
        self.server = None

    def start(self) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), StandInHub)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@pytest.fixture
def hub():
    StandInHub.tokens = {KIM: "kim"}
    hub = Hub()
    hub.start()
    yield hub
    hub.stop()


@pytest.fixture
def server(hub, tmp_path):
    """kim's real jupyterhub-singleuser, its hub's answers cached 1 s; returns its API's status URL."""
    port = free_port()
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps({"HubOAuth": {"cache_max_age": 1}}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "JUPYTER_CONFIG_PATH": str(SERVER_CONFIG), "JUPYTER_CONFIG_DIR": str(config),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "JUPYTERHUB_API_URL": f"http://127.0.0.1:{hub.port}/hub/api", "JUPYTERHUB_API_TOKEN": "server-token",
           "JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{port}/user/kim/", "JUPYTERHUB_USER": "kim",
           "JUPYTERHUB_SERVICE_PREFIX": "/user/kim/", "JUPYTERHUB_BASE_URL": "/",
           "JUPYTERHUB_CLIENT_ID": "jupyterhub-user-kim", "JUPYTERHUB_OAUTH_CALLBACK_URL": "/user/kim/oauth_callback",
           "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:servers!server=kim/", "access:servers!user=kim"])}
    argv = [str(Path(sys.executable).parent / "jupyterhub-singleuser")]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/user/kim/api/status"
    try:
        deadline = time.monotonic() + 30
        while status_of(url, KIM) != 200:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url, log
    finally:
        proc.terminate()
        proc.wait(15)


def status_of(url: str, token: str) -> int | None:
    try:
        return requests.get(url, headers={"Authorization": f"token {token}"}, timeout=5).status_code
    except requests.RequestException:
        return None


def test_the_users_server_answers_her_through_a_hub_outage_longer_than_its_cache_and_nobody_else(hub, server):
    url, log = server
    assert status_of(url, OTHER) == 403  # the hub does not know it
    hub.stop()
    time.sleep(1.5)  # kim's answer expired: upstream asks the hub again, fails, and answers 500
    assert [status_of(url, KIM) for _ in range(5)] == [200] * 5, log.read_text()[-3000:]
    assert status_of(url, OTHER) != 200  # a token the hub never identified for this server: still refused
    assert status_of(url, "never-seen") != 200
    assert log.read_text().count("the hub does not answer") == 1  # once per outage, not per request

    StandInHub.tokens = {}  # the hub back, having revoked kim's token meanwhile: its answer counts again
    hub.start()
    time.sleep(1.5)
    assert status_of(url, KIM) == 403


def ask(hub_auth: HubAuth, token: str):
    return asyncio.run(hub_auth._check_hub_authorization(f"{hub_auth.api_url}/user", token, cache_key=token))


def test_a_kept_answer_serves_only_its_grace_past_expiry_and_a_4xx_is_not_an_outage(hub):
    now = [time.monotonic()]
    hub_auth = HubAuth(api_url=f"http://127.0.0.1:{hub.port}/hub/api", api_token="server-token", cache_max_age=1)
    keep_answers_through_outages(hub_auth, grace=10, clock=lambda: now[0])
    assert ask(hub_auth, KIM)["name"] == "kim"
    hub.stop()
    now[0] += 1 + 9  # within the grace
    time.sleep(1.1)  # the cache's own clock (time.monotonic) expires the answer
    assert ask(hub_auth, KIM)["name"] == "kim"
    now[0] += 2  # past it
    with pytest.raises(HTTPError) as refused:
        ask(hub_auth, KIM)
    assert refused.value.status_code == 500  # upstream's own answer: the hub is unreachable

    hub.start()
    StandInHub.tokens = {KIM: None}
    with pytest.raises(HTTPError):  # the hub answered, with a 4xx: no outage, the kept answer is not used
        ask(hub_auth, KIM)
    StandInHub.tokens = {}
    assert ask(hub_auth, KIM) is None  # the hub's 403: no such user, as upstream
