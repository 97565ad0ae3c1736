"""The time a server has left, for JupyterLab to show: a jupyter-server extension serving
GET {base_url}barehub/session -> {"ends_at": ISO-8601 UTC or null, "warn_before_s": int, "now": ISO-8601 UTC}.

Why. A server run as a Slurm job is killed when the job reaches its time limit, and the work not saved by then
is lost; the user never sees that limit. The hub knows when the job ends (it asks Slurm) and serves it to the
server itself at {JUPYTERHUB_API_URL}/users/{user}/sessions/{server_name}, with the server's own token. The
browser cannot ask the hub with that token, so this extension asks for it, and the lab extension
(barehub/labextension, "@barehub/session-clock") shows the time left and warns warn_before_s before the end.
"now" is this server's clock, so a browser whose clock is off still counts down right.

- One hub request per CACHE_SECONDS whatever the number of open tabs (concurrent asks share one request).
- A hub that does not answer (restarting, unreachable) costs no error: the last answer is served (ends_at null
  before any), and it is asked again CACHE_SECONDS later.
- No JUPYTERHUB_API_URL (a plain `jupyter lab`, not started by a hub), or no SLURM_JOB_ID (a local server: no
  time limit): ends_at is null, nothing is shown, the hub is not asked.
- An https hub URL is checked against the system's CAs (a site CA installed there is trusted), with the
  JUPYTERHUB_SSL_* client certificate when the hub uses internal_ssl, as jupyterhub-singleuser does.
- Asking does not count as activity: an open tab does not keep an idle server from being culled.
Enabled for every server of the environment by jupyter-config/jupyter_server_config.d/barehub.json.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import time
from urllib.parse import quote

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from barehub.utc_time import epoch, iso

CACHE_SECONDS = 30
HUB_TIMEOUT = 10  # seconds for one hub answer
DEFAULT_WARN = 600  # seconds: what the lab extension uses until the hub has said otherwise

log = logging.getLogger(__name__)


def hub_session_url(env) -> str | None:
    """The hub's URL for this server's session, or None when no hub started the server, or the server is not a
    Slurm job (only a job has a time limit: a local server's tabs then cost the hub nothing)."""
    api_url = env.get("JUPYTERHUB_API_URL")
    user = env.get("JUPYTERHUB_USER")
    if not api_url or not user or not env.get("SLURM_JOB_ID"):
        return None
    server_name = env.get("JUPYTERHUB_SERVER_NAME", "")
    return f"{api_url.rstrip('/')}/users/{quote(user, safe='')}/sessions/{quote(server_name, safe='')}"


def _ssl_options(env) -> ssl.SSLContext | None:
    """jupyterhub-singleuser's client TLS for the hub: the internal_ssl client certificate when there is one;
    None otherwise, i.e. tornado's default (the system's CAs)."""
    keyfile, certfile = env.get("JUPYTERHUB_SSL_KEYFILE"), env.get("JUPYTERHUB_SSL_CERTFILE")
    if not keyfile or not certfile:
        return None
    context = ssl.create_default_context(cafile=env.get("JUPYTERHUB_SSL_CLIENT_CA") or None)
    context.load_default_certs()
    context.load_cert_chain(certfile, keyfile)
    return context


def _parse(body: bytes) -> dict:
    """The hub's answer, reduced to what the browser needs; ValueError when it is not one."""
    data = json.loads(body)
    ends_at = data.get("ends_at") or None  # the hub says "" when the job has no end (yet)
    if ends_at is not None:
        moment = epoch(ends_at)
        if moment is None:
            raise ValueError(f"ends_at {ends_at!r} is not a time")
        ends_at = iso(moment)
    warn = data.get("warn_before_s")
    warn = DEFAULT_WARN if warn is None else warn
    if isinstance(warn, bool) or not isinstance(warn, int) or warn < 0:
        raise ValueError(f"warn_before_s {warn!r}")
    return {"ends_at": ends_at, "warn_before_s": warn}


class SessionClock:
    """The hub's answer for this server, asked at most once per CACHE_SECONDS."""

    def __init__(self, env=os.environ, clock=time.monotonic):
        self.url = hub_session_url(env)
        self.token = env.get("JUPYTERHUB_API_TOKEN", "")
        self.ssl = _ssl_options(env) if self.url and self.url.startswith("https:") else None
        self.clock = clock
        self.value = {"ends_at": None, "warn_before_s": DEFAULT_WARN}
        self.asked_at: float | None = None
        self.failing = False
        self._asking: asyncio.Future | None = None

    async def get(self) -> dict:
        if self.url is None:
            return dict(self.value)
        if self.asked_at is None or self.clock() - self.asked_at >= CACHE_SECONDS:
            if self._asking is None:  # the first ask asks the hub; the others wait for its answer
                self._asking = asyncio.ensure_future(self._ask())
            asking = self._asking
            await asyncio.shield(asking)
        return dict(self.value)

    async def _ask(self) -> None:
        try:
            request = HTTPRequest(self.url, headers={"Authorization": f"token {self.token}"},
                                  connect_timeout=HUB_TIMEOUT, request_timeout=HUB_TIMEOUT, ssl_options=self.ssl)
            response = await AsyncHTTPClient().fetch(request)
            self.value = _parse(response.body)
            if self.failing:
                log.info("barehub session clock: the hub answers again")
            self.failing = False
        except Exception as e:  # any failure: keep the last answer, ask again later
            # (once per failing spell at warning level: a hub down for an hour logs one line, not 120)
            log.log(logging.DEBUG if self.failing else logging.WARNING,
                    "barehub session clock: no answer from the hub (%s), keeping the last one: %s", self.url, e)
            self.failing = True
        finally:
            self.asked_at = self.clock()
            self._asking = None


class SessionHandler(APIHandler):
    auth_resource = "api"
    _track_activity = False  # a tab asking is not a person working

    @web.authenticated
    @authorized
    async def get(self) -> None:
        answer = await self.settings["barehub_session_clock"].get()
        answer["now"] = iso(time.time())
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(answer))


def _jupyter_server_extension_points():
    return [{"module": "barehub.session_clock"}]


def _load_jupyter_server_extension(serverapp) -> None:
    web_app = serverapp.web_app
    web_app.settings["barehub_session_clock"] = SessionClock()
    route = url_path_join(web_app.settings["base_url"], "barehub/session")
    web_app.add_handlers(".*$", [(route, SessionHandler)])
