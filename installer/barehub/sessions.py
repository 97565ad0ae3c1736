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
- PATCH {hub}/api/users/NAME/sessions/SERVER {"keep_until": ISO-8601 or null}: keep the server running until
  then, within the site's maximum (c.Barehub.keep_max), with the token's servers scope for NAME (her own);
- POST {hub}/api/users/NAME/work {"server": SERVER, "busy": "kernel" | "cpu" | null, "busy_since": ISO-8601,
  "last_activity": ISO-8601}: a server's own report that it is working, or of its user's last activity
  (barehub.server_activity), with users:activity for NAME, as JupyterHub's activity API (POST /users/NAME/activity)
  is; a report moves the server's last_activity, and the answer says how often to report (barehub.culling). (The server is named in the body, as in JupyterHub's activity API:
  a URL with the default server's empty name, .../sessions//work, would not survive a proxy that merges slashes.)
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

from barehub.culling import profile_in
from barehub.server_tokens import spawner_of_token
from barehub.utc_time import epoch, iso

REFRESH_S = 5  # how often the page asks again


def describe(model: dict, details: dict, ended: dict | None, now: float, work: dict | None = None,
             keep_until: float | None = None) -> dict:
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
    profile = profile_in(model.get("user_options"))
    return {
        "state": state,
        "why": why,
        "profile": profile or "",
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
        "busy": ((work or {}).get("busy") or "") if state == "running" else "",
        "busy_since": iso((work or {}).get("busy_since")) if state == "running" else "",
        "keep_until": iso(keep_until) if keep_until and keep_until > now and state == "running" else "",
    }


def session_model(handler: BaseHandler, spawner) -> dict:
    details = spawner.session_details() if callable(getattr(spawner, "session_details", None)) else {}
    ended = getattr(spawner, "ended", None)
    model = handler.server_model(spawner)
    model.pop("state", None)  # the spawner's raw state (admins only) is not the session's
    return {**model, **describe(model, details, ended if isinstance(ended, dict) else None, time.time(),
                                getattr(spawner, "work", None), getattr(spawner, "keep_until", None))}


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

    @needs_scope("servers")
    def patch(self, user_name, server_name):
        """{"keep_until": ISO-8601 or null}: the culler keeps the server running until then (null: no longer), within
        c.Barehub.keep_max from now. Saved with the server's state, so a hub restart keeps it."""
        body = json_body(self)
        unknown = set(body) - {"keep_until"}
        if unknown or "keep_until" not in body:
            raise web.HTTPError(400, f'the body must be {{"keep_until": ISO-8601 time or null}}; unknown: '
                                     f'{", ".join(sorted(unknown)) or "none"}')
        keep_until = self.keep_until(body["keep_until"])
        user, spawner = running_spawner(self, user_name, server_name)
        if not hasattr(spawner, "keep_until"):
            raise web.HTTPError(409, f"{type(spawner).__name__} servers cannot be kept (not a barehub spawner)")
        spawner.keep_until = keep_until
        save_state(self, spawner)
        self.log.info("%s keeps %s until %s", self.current_user.name, spawner._log_name,
                      iso(spawner.keep_until) or "no longer")
        self.write(session_model(self, spawner))

    def keep_until(self, value) -> float | None:
        if value is None:
            return None
        moment, now = epoch(value), time.time()
        keep_max = self.settings["barehub_cull_policy"].keep_max
        if moment is None:
            raise web.HTTPError(400, f'"keep_until" must be an ISO-8601 time such as "2026-12-06T18:00:00Z", or null, '
                                     f'not {value!r}')
        if moment <= now:
            raise web.HTTPError(400, f'"keep_until" {iso(moment)} has passed (now {iso(now)})')
        if not keep_max:
            raise web.HTTPError(403, "this hub does not let users keep servers running (c.Barehub.keep_max is 0)")
        if moment > now + keep_max:
            raise web.HTTPError(400, f'"keep_until" {iso(moment)} is beyond the longest keep this hub allows, '
                                     f'{keep_max // 3600} h {keep_max % 3600 // 60} min from now (until '
                                     f'{iso(now + keep_max)})')
        return moment


def running_spawner(handler: APIHandler, user_name: str, server_name: str):
    """The user's running server of that name (the scope was checked for the user), else 404/409."""
    user = handler.find_user(user_name)
    orm_spawner = user.orm_spawners.get(server_name) if user is not None else None
    if orm_spawner is None:
        raise web.HTTPError(404, f"no such server: {user_name}/{server_name}")
    spawner = user.spawners[server_name]
    if not spawner.ready:
        raise web.HTTPError(409, f"server {user_name}/{server_name} is not running")
    return user, spawner


def json_body(handler: APIHandler) -> dict:
    body = handler.get_json_body()
    if not isinstance(body, dict):
        raise web.HTTPError(400, "the body must be a JSON object")
    return body


def save_state(handler: APIHandler, spawner) -> None:
    spawner.orm_spawner.state = spawner.get_state()
    handler.db.commit()


WORK_KEYS = {"server", "busy", "busy_since", "last_activity"}


def work_report(body: dict) -> tuple[str, str | None, float | None, float | None]:
    """(server, busy, busy_since, last_activity) from a work report's body; 400 naming the field when it is not
    one."""
    unknown = set(body) - WORK_KEYS
    if unknown:
        raise web.HTTPError(400, f"unknown field(s) {', '.join(sorted(unknown))}; a report has "
                                 f"{', '.join(sorted(WORK_KEYS))}")
    server_name, busy = body.get("server", ""), body.get("busy")
    if not isinstance(server_name, str):
        raise web.HTTPError(400, f'"server" must be the server\'s name ("" for the default one), not {server_name!r}')
    if busy not in (None, "kernel", "cpu"):
        raise web.HTTPError(400, f'"busy" must be "kernel", "cpu" or null, not {busy!r}')
    busy_since = epoch(body.get("busy_since"))
    if busy and busy_since is None:
        raise web.HTTPError(400, f'"busy_since" must be an ISO-8601 time when "busy" is set, not '
                                 f'{body.get("busy_since")!r}')
    last_activity = epoch(body.get("last_activity"))
    if body.get("last_activity") is not None and last_activity is None:
        raise web.HTTPError(400, f'"last_activity" must be an ISO-8601 time or absent, not {body["last_activity"]!r}')
    return server_name, busy, busy_since, last_activity


class WorkAPIHandler(APIHandler):
    @needs_scope("users:activity")
    def post(self, user_name):
        """{"server": name, "busy": "kernel" | "cpu" | null, "busy_since": ISO-8601, "last_activity": ISO-8601}:
        recorded for the culler (barehub.server_work, which keeps the start of a spell itself); a busy server's
        last_activity moves to now, an idle one's to the user's last activity it tells (never past now, never back),
        as JupyterHub's activity API moves it. A server's own token reports for that server only."""
        server_name, busy, busy_since, last_activity = work_report(json_body(self))
        own = spawner_of_token(self)
        if own is not None and (own.user.name != user_name or own.name != server_name):
            raise web.HTTPError(403, f"a server's token reports for its own server only, not {user_name}/{server_name}")
        user, spawner = running_spawner(self, user_name, server_name)
        now, policy = time.time(), self.settings["barehub_cull_policy"]
        profile = profile_in(spawner.user_options)
        if callable(getattr(spawner, "record_work", None)):
            started = spawner.orm_spawner.started
            spawner.record_work(busy, busy_since, now, fresh_s=policy.stale_after(profile),
                                started=started.replace(tzinfo=timezone.utc).timestamp() if started else None)
        active = now if busy else min(last_activity, now) if last_activity is not None else None
        if active is not None:
            moment = datetime.fromtimestamp(active, timezone.utc).replace(tzinfo=None)  # the hub's naive UTC
            if not spawner.orm_spawner.last_activity or spawner.orm_spawner.last_activity < moment:
                spawner.orm_spawner.last_activity = moment
            if not user.orm_user.last_activity or user.orm_user.last_activity < moment:
                user.orm_user.last_activity = moment
            self.db.commit()
        self.write({"report_every_s": policy.report_every(profile), "cpu_active_percent": policy.cpu_active_percent})


def named_servers(handler: BaseHandler, user) -> dict:
    limit = handler.named_server_limit_per_user
    return {"allowed": bool(handler.allow_named_servers), "limit": limit if isinstance(limit, int) else 0,
            "count": sum(1 for name in user.orm_spawners if name)}


class SessionsPageHandler(BaseHandler):
    @web.authenticated
    async def get(self):
        user = self.current_user
        html = await self.render_template("sessions.html", user=user, refresh_s=REFRESH_S,
                                          named_servers=named_servers(self, user),
                                          keep_max_s=self.settings["barehub_cull_policy"].keep_max)
        self.finish(html)


# (path under the hub's prefix, handler): added by barehub.hub ahead of JupyterHub's own
HANDLERS = [
    (r"/api/users/([^/]+)/sessions", SessionsAPIHandler),
    (r"/api/users/([^/]+)/sessions/([^/]*)", SessionAPIHandler),
    (r"/api/users/([^/]+)/work", WorkAPIHandler),
    (r"/sessions", SessionsPageHandler),
]
