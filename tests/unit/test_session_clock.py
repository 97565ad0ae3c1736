"""The Slurm time left, shown in JupyterLab (barehub.session_clock and the lab extension @barehub/session-clock).

The hub here is a stand-in (an http.server on loopback, conftest's hub_api_server) answering
GET /hub/api/users/{user}/sessions/{server_name} as the real hub does; the server extension is checked on its own
(caching, a hub that is down, no hub), then in a real jupyter-server enabled by the env's config file, the lab
extension's files as JupyterLab discovers them, and its code under node with a stand-in page and app.
"""
from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import shutil
import subprocess
import time
import tomllib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

from barehub import session_clock
from barehub.session_clock import CACHE_SECONDS, SessionClock

from tests.unit.conftest import SERVER_AUTH, SERVER_CONFIG, start_jupyter_server
REPO = Path(__file__).resolve().parents[2]
LABEXT = REPO / "installer" / "barehub" / "labextension"
ENDS_AT = "2026-12-06T08:15:00Z"


class Hub(http.server.BaseHTTPRequestHandler):
    """A stand-in for the hub's sessions API: records each request, answers `Hub.answer`."""
    requests: list[tuple[str, str]] = []
    answer: dict = {}
    status = 200

    def do_GET(self):
        Hub.requests.append((self.path, self.headers.get("Authorization", "")))
        body = json.dumps(Hub.answer).encode()
        self.send_response(Hub.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(monkeypatch, hub_api_server):
    Hub.requests = []
    Hub.answer = {"state": "running", "ends_at": ENDS_AT, "warn_before_s": 900, "started": "2026-12-06T06:15:00Z"}
    Hub.status = 200
    Hub.server = hub_api_server(Hub)
    monkeypatch.setenv("JUPYTERHUB_USER", "kim")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "")
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # a server in a Slurm job
    return Hub


class Clock:
    """time.monotonic, moved by hand."""
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def ask(clock: SessionClock, times: int = 1) -> list[dict]:
    async def main():
        return await asyncio.gather(*(clock.get() for _ in range(times)))
    return asyncio.run(main())


def test_default_server_asks_its_session_with_its_own_token(hub):
    [answer] = ask(SessionClock())
    assert answer == {"ends_at": ENDS_AT, "warn_before_s": 900}
    assert hub.requests == [("/hub/api/users/kim/sessions/", "token server-token")]


def test_named_server_names_are_quoted(hub, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_USER", "kim@lab")
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu run/2")
    ask(SessionClock())
    assert hub.requests == [("/hub/api/users/kim%40lab/sessions/gpu%20run%2F2", "token server-token")]


def test_one_hub_request_per_30_seconds_whatever_the_tabs(hub):
    clock = Clock()
    sessions = SessionClock(clock=clock)
    assert ask(sessions, times=3) == [{"ends_at": ENDS_AT, "warn_before_s": 900}] * 3  # at once: one request
    clock.now += CACHE_SECONDS - 1
    ask(sessions)
    assert len(hub.requests) == 1
    hub.answer = {"ends_at": "2026-12-06T09:15:00+00:00", "warn_before_s": 600}  # the job's limit was raised
    clock.now += 1
    assert ask(sessions) == [{"ends_at": "2026-12-06T09:15:00Z", "warn_before_s": 600}]
    assert len(hub.requests) == 2


@pytest.mark.parametrize("failure", ["down", "error", "garbage"])
def test_a_hub_that_does_not_answer_leaves_the_last_answer(hub, failure):
    clock = Clock()
    sessions = SessionClock(clock=clock)
    ask(sessions)
    if failure == "down":
        hub.server.shutdown()
        hub.server.server_close()
    elif failure == "error":
        hub.status = 503
    else:
        hub.answer = {"ends_at": "soon", "warn_before_s": 600}
    clock.now += CACHE_SECONDS
    assert ask(sessions) == [{"ends_at": ENDS_AT, "warn_before_s": 900}]
    clock.now += CACHE_SECONDS
    assert ask(sessions) == [{"ends_at": ENDS_AT, "warn_before_s": 900}]


def test_a_hub_down_from_the_start_means_no_time_limit(hub):
    hub.server.shutdown()
    hub.server.server_close()
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}]


def test_no_time_limit(hub):
    hub.answer = {"state": "running", "ends_at": None, "warn_before_s": 600}
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}]


def test_the_hubs_answer_for_a_job_with_no_end_and_for_a_local_server_is_no_time_limit(hub):
    hub.answer = {"state": "queued", "ends_at": "", "warn_before_s": 600}  # what barehub.sessions says
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}]
    hub.answer = {"state": "running", "ends_at": "", "warn_before_s": None}
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}]


def test_a_local_server_does_not_ask_the_hub(hub, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID")
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}] and hub.requests == []


def test_no_hub_no_time_limit(monkeypatch):
    for name in ("JUPYTERHUB_API_URL", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    assert ask(SessionClock()) == [{"ends_at": None, "warn_before_s": 600}]


def test_https_hub_uses_the_system_cas_unless_internal_ssl(tmp_path):
    env = {"JUPYTERHUB_API_URL": "https://hub.example.org/hub/api", "JUPYTERHUB_USER": "kim", "SLURM_JOB_ID": "42"}
    assert SessionClock(env).ssl is None  # tornado's default: the system's CAs (a site CA installed there)
    missing = dict(env, JUPYTERHUB_SSL_KEYFILE=str(tmp_path / "k"), JUPYTERHUB_SSL_CERTFILE=str(tmp_path / "c"))
    with pytest.raises(OSError):  # internal_ssl: its client certificate is loaded (here: there is none)
        SessionClock(missing)


# --- in a real jupyter-server, enabled by the env's config file

@pytest.fixture
def jupyter_server(hub, tmp_path):
    """jupyter-server as a server of the env runs: the env's config enables the extension, the hub's environment
    variables point to the stand-in hub."""
    server, url = start_jupyter_server(tmp_path, subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        assert server.poll() is None, server.stderr.read().decode()
        try:
            requests.get(url + "api/status", timeout=1)
            break
        except requests.ConnectionError:
            assert time.monotonic() < deadline, "jupyter-server did not start"
            time.sleep(0.1)
    yield url
    server.terminate()
    server.wait(10)


def test_served_to_the_user_only_and_not_as_activity(jupyter_server, hub):
    token = SERVER_AUTH
    assert requests.get(jupyter_server + "barehub/session", timeout=10).status_code == 403
    before = requests.get(jupyter_server + "api/status", headers=token, timeout=10).json()["last_activity"]
    time.sleep(0.01)
    response = requests.get(jupyter_server + "barehub/session", headers=token, timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["ends_at"], answer["warn_before_s"]) == (ENDS_AT, 900)
    now = datetime.fromisoformat(answer["now"])
    assert abs(now - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert response.headers["Cache-Control"] == "no-store"
    assert hub.requests == [("/hub/api/users/kim/sessions/", "token server-token")]
    # an open tab asking every 30 s does not keep an idle server from being culled
    after = requests.get(jupyter_server + "api/status", headers=token, timeout=10).json()["last_activity"]
    assert after == before


# --- the lab extension's files, as the wheel installs them and JupyterLab finds them

def test_wheel_installs_the_extension_and_its_server_config():
    shared = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
        "shared-data"]
    assert shared["installer/barehub/labextension"] == "share/jupyter/labextensions/@barehub/session-clock"
    assert shared["installer/barehub/jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"
    config = json.loads((SERVER_CONFIG / "jupyter_server_config.d" / "barehub.json").read_text())
    assert config["ServerApp"]["jpserver_extensions"]["barehub.session_clock"] is True
    assert session_clock._jupyter_server_extension_points() == [{"module": "barehub.session_clock"}]


def test_jupyterlab_loads_the_extension(tmp_path):
    from jupyterlab_server.config import get_page_config

    shutil.copytree(LABEXT, tmp_path / "labextensions" / "@barehub" / "session-clock")
    page_config = get_page_config([str(tmp_path / "labextensions")], str(tmp_path / "settings"))
    [extension] = [e for e in page_config["federated_extensions"] if e["name"] == "@barehub/session-clock"]
    assert extension["extension"] == "./extension"
    assert (LABEXT / extension["load"]).is_file()


def test_the_script_name_changes_with_its_content():
    """Browsers cache the script by its name: an edited script must carry a new one."""
    load = json.loads((LABEXT / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    scripts = sorted(p.name for p in (LABEXT / "static").iterdir())
    assert scripts == [Path(load).name], "one script, the one package.json loads"
    digest = hashlib.sha256((LABEXT / load).read_bytes()).hexdigest()[:16]
    assert load == f"static/remoteEntry.{digest}.js", "rename the script after its sha256 (and update package.json)"


# --- the lab extension's code, under node with a stand-in page and JupyterLab app

NODE_HARNESS = r"""
const vm = require('vm');
const fs = require('fs');
const [script, answersJson] = process.argv.slice(2);
const answers = JSON.parse(answersJson);  // what GET barehub/session answers, one per poll (last one repeats)
const log = [];
const timers = [];
let clientNow = Date.parse('2030-01-01T00:00:00Z');  // a browser clock 3+ years off the server's
const FakeDate = class extends Date { static now() { return clientNow; } };
const config = {textContent: JSON.stringify({baseUrl: '/user/kim/'})};
const topBar = [];
class Widget {
  constructor() { this.node = {textContent: '', attrs: {}, classList: new Set(), title: '',
                               setAttribute(k, v) { this.attrs[k] = v; }}; this.visible = true;
                  this.node.classList.toggle = function (c, on) { on ? this.add(c) : this.delete(c); }; }
  hide() { this.visible = false; }
  show() { this.visible = true; }
}
let polls = 0;
const notifications = new Map();
const app = {
  restored: Promise.resolve(),
  shell: {add: (w, area, options) => topBar.push([w, area, options])},
  commands: {execute: async (id, args) => {
    log.push([id, args]);
    if (id === 'apputils:notify') { notifications.set('n1', args.message); return 'n1'; }
    if (id === 'apputils:update-notification') { return notifications.has(args.id); }
    if (id === 'apputils:dismiss-notification') { notifications.delete(args.id); }
  }}
};
const window = {};
const context = {
  window, console, Promise, JSON, Math, Number, Error, Object, parseInt,
  Date: FakeDate,
  setInterval: (f, ms) => timers.push([f, ms]),
  document: {getElementById: id => (id === 'jupyter-config-data' ? config : null), cookie: '_xsrf=2|abc|def',
             createElement: () => ({}), head: {appendChild: () => {}}},
  fetch: async (url, init) => {
    const answer = answers[Math.min(polls++, answers.length - 1)];
    log.push(['fetch', url, init.headers['X-XSRFToken'], init.credentials]);
    return {ok: true, json: async () => answer};
  },
};
vm.runInNewContext(fs.readFileSync(script, 'utf8'), context);
const settle = () => new Promise(r => setTimeout(r, 20));
(async () => {
  const container = window._JUPYTERLAB['@barehub/session-clock'];
  container.init({'@lumino/widgets': {'2.7.0': {get: () => Promise.resolve(() => ({Widget}))}}});
  const exports = (await container.get('./extension'))();
  const [plugin] = exports.default;
  const state = () => topBar.length ? {text: topBar[0][0].node.textContent, visible: topBar[0][0].visible,
                                       warn: topBar[0][0].node.classList.has('barehub-mod-warn')} : null;
  const steps = [];
  plugin.activate(app);
  await settle();
  steps.push(state());
  for (const advance of [60, 60, 60]) {  // seconds on the browser's clock, then the timers fire
    clientNow += advance * 1000;
    for (const [f] of timers) { f(); }
    await settle();
    steps.push(state());
  }
  notifications.clear();  // the person closes the warning
  clientNow += 60000;
  for (const [f] of timers) { f(); }
  await settle();
  steps.push(state());
  console.log(JSON.stringify({esModule: exports.__esModule, plugin: {id: plugin.id, autoStart: plugin.autoStart,
    requires: plugin.requires || []}, steps, log, top: topBar.map(([w, area, o]) => [area, o.rank])}));
})();
"""


def run_lab_extension(tmp_path, answers: list[dict]) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node to run the lab extension's script")
    harness = tmp_path / "harness.js"
    harness.write_text(NODE_HARNESS)
    load = json.loads((LABEXT / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    out = subprocess.run([node, str(harness), str(LABEXT / load), json.dumps(answers)], capture_output=True,
                         text=True, timeout=60, check=True)
    return json.loads(out.stdout)


def test_lab_extension_counts_down_and_warns_once(tmp_path):
    server_now = datetime(2026, 12, 6, 8, 0, tzinfo=timezone.utc)
    ends_at = server_now + timedelta(minutes=12)
    answer = {"ends_at": ends_at.isoformat().replace("+00:00", "Z"), "warn_before_s": 600,
              "now": server_now.isoformat().replace("+00:00", "Z")}
    result = run_lab_extension(tmp_path, [answer] + [dict(answer, now=(server_now + timedelta(minutes=m))
                                                          .isoformat().replace("+00:00", "Z")) for m in (1, 2, 3, 4)])
    assert result["esModule"] is True
    assert result["plugin"] == {"id": "@barehub/session-clock:plugin", "autoStart": True, "requires": []}
    assert result["top"] == [["top", 1000]]
    assert [s["text"] for s in result["steps"]] == ["Time left: 12 min", "Time left: 11 min", "Time left: 10 min",
                                                   "Time left: 9 min", "Time left: 8 min"]
    assert [s["warn"] for s in result["steps"]] == [False, False, True, True, True]
    fetches = [entry for entry in result["log"] if entry[0] == "fetch"]
    assert fetches[0] == ["fetch", "/user/kim/barehub/session", "2|abc|def", "same-origin"]
    commands = [entry for entry in result["log"] if entry[0] != "fetch"]
    text = ("This session ends in {} minutes (Slurm's time limit). "
            "Save your work: unsaved changes will be lost when the job ends.")
    def update(minutes):
        return ["apputils:update-notification",
                {"id": "n1", "message": text.format(minutes), "type": "warning", "autoClose": False}]
    assert commands == [
        ["apputils:notify", {"message": text.format(10), "type": "warning", "options": {"autoClose": False}}],
        update(9),
        update(8),  # found closed by the person: updated no more, and no new one shown
    ]


def test_lab_extension_shows_nothing_without_a_time_limit(tmp_path):
    result = run_lab_extension(tmp_path, [{"ends_at": None, "warn_before_s": 600, "now": "2026-12-06T08:00:00Z"}])
    assert result["steps"] == [None] * 5
    assert result["top"] == []
    assert [entry for entry in result["log"] if entry[0] != "fetch"] == []


def test_lab_extension_hours(tmp_path):
    answer = {"ends_at": "2026-12-06T09:23:00Z", "warn_before_s": 600, "now": "2026-12-06T08:00:00Z"}
    result = run_lab_extension(tmp_path, [answer])
    assert result["steps"][0]["text"] == "Time left: 1 h 23 min"
