"""A user's sessions: one card per server on /hub/sessions, and the same through the REST API.

Open OnDemand's session cards are what HPC users compare against: each session with its state (queued with
Slurm's reason and expected start, starting, running, ended and why), its node, the time it used and the time it
has left, where its log is, and Cancel / Relaunch / Delete. JupyterHub's own model of a server (its API's
server model) has none of the Slurm fields and forgets why a server ended. Here the hub adds them, from the
spawner itself (barehub's spawners' `session_details()` and `ended`, see barehub.server_end), so:
- GET {hub}/api/users/NAME/sessions: every server of NAME (running or not), with the token's read:servers
  for NAME (her own token, the page's cookie, an admin), as JupyterHub's server list is;
- GET {hub}/api/users/NAME/sessions/SERVER: one; also for the server's own token (only its own session:
  JupyterLab's walltime warning, barehub.session_clock, asks through it);
- GET {hub}/sessions: the page (JupyterHub's templates; plain HTML and a small script that asks the API
  every few seconds). Cancel, Relaunch and Delete are JupyterHub's own server API calls; a new session goes
  through JupyterHub's spawn page for a named server (/hub/spawn/NAME/SERVER), as its home page does.
No second web framework: tornado handlers in the hub process (barehub.hub adds them), as JupyterHub's are.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.handlers.base import BaseHandler
from jupyterhub.scopes import needs_scope
from tornado import web

from barehub.server_tokens import spawner_of_token

REFRESH_S = 5  # how often the page asks again


def iso(epoch: float | None) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else ""


def epoch(text: str | None) -> float | None:
    """JupyterHub's ("2026-12-06T08:00:00.123456Z") and barehub's ISO times as epoch seconds."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def describe(model: dict, details: dict, ended: dict | None, now: float) -> dict:
    """The session's state and times, from JupyterHub's server model, the spawner's details and why it ended
    (pure: the card and the API say exactly this)."""
    if model["pending"] == "stop":
        state, why = "stopping", ""
    elif model["ready"]:
        state, why = "running", ""
    elif model["pending"]:
        queued = details.get("job_state") == "PENDING"
        state, why = ("queued", details.get("waiting", "")) if queued else ("starting", "")
    elif ended:
        state, why = "ended", ended["reason"]
    else:
        state, why = "stopped", ""
    started = epoch(details.get("job_started")) or epoch(model.get("started"))
    ends = epoch(details.get("ends_at")) if state in ("running", "starting", "stopping") else None
    options = model.get("user_options") or {}
    profile = options.get("profile") if isinstance(options, dict) else None
    return {
        "state": state,
        "why": why,
        "profile": profile if isinstance(profile, str) else "",
        "time_used_s": round(now - started) if started and state in ("running", "stopping") else None,
        "ends_at": iso(ends) if ends else "",
        "time_left_s": max(0, round(ends - now)) if ends else None,
        "warn_before_s": details.get("warn_before_s"),
        "ended_at": iso(ended["at"]) if ended and state == "ended" else "",
        "node": details.get("node", ""),
        "job_id": details.get("job_id") or (ended or {}).get("job_id", ""),
        "log": details.get("log") or (ended or {}).get("log", ""),
        "expected_start": details.get("expected_start", "") if state == "queued" else "",
        "kind": details.get("kind", "other"),
    }


def session_model(handler: BaseHandler, spawner) -> dict:
    details = spawner.session_details() if callable(getattr(spawner, "session_details", None)) else {}
    ended = getattr(spawner, "ended", None)
    model = handler.server_model(spawner)
    model.pop("state", None)  # the spawner's raw state (admins only) is not the session's
    return {**model, **describe(model, details, ended if isinstance(ended, dict) else None, time.time())}


def sessions_of(handler: BaseHandler, user) -> list[dict]:
    """Every server of the user, running or not, the default one first."""
    return [session_model(handler, user.spawners[name]) for name in sorted({"", *user.orm_spawners})]


class SessionsAPIHandler(APIHandler):
    @needs_scope("read:servers")
    def get(self, user_name):
        user = self.find_user(user_name)
        if user is None:
            raise web.HTTPError(404, f"no such user: {user_name}")
        self.write({"sessions": sessions_of(self, user), "named_servers": named_servers(self, user)})


class SessionAPIHandler(APIHandler):
    def get(self, user_name, server_name):
        """One session: for read:servers on it, or for that server's own token. Access is decided on the database's
        record, before any spawner of another user is made; a server that is not there and one the request may not
        see get the same answer."""
        if self.current_user is None:
            raise web.HTTPError(403, "authentication required (a token, or the hub's login cookie)")
        missing = web.HTTPError(404, f"no such server: {user_name}/{server_name}")
        user = self.find_user(user_name)
        orm_spawner = user.orm_spawners.get(server_name) if user is not None else None
        if orm_spawner is None:
            raise missing
        own = spawner_of_token(self)
        is_own = own is not None and own.user.name == user.name and own.name == server_name
        if not is_own and not self.get_scope_filter("read:servers")(orm_spawner, kind="server"):
            raise missing
        self.write(session_model(self, user.spawners[server_name]))


def named_servers(handler: BaseHandler, user) -> dict:
    limit = handler.named_server_limit_per_user
    return {"allowed": bool(handler.allow_named_servers), "limit": limit if isinstance(limit, int) else 0,
            "count": sum(1 for name in user.orm_spawners if name)}


class SessionsPageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        user = self.current_user
        html = await self.render_template("sessions.html", user=user, refresh_s=REFRESH_S,
                                          named_servers=named_servers(self, user))
        self.finish(html)


# (path under the hub's prefix, handler): added by barehub.hub ahead of JupyterHub's own
HANDLERS = [
    (r"/api/users/([^/]+)/sessions", SessionsAPIHandler),
    (r"/api/users/([^/]+)/sessions/([^/]*)", SessionAPIHandler),
    (r"/sessions", SessionsPageHandler),
]
