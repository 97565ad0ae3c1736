"""A user's server goes on serving her while the hub is away (a restart, an upgrade, its rollback): a
jupyter-server extension, enabled for every server of the env.

Why. jupyterhub-singleuser asks the hub who a request's token (or OAuth cookie) belongs to and keeps the answer
HubAuth.cache_max_age s (300). An answer that expires while the hub is down is asked again, the ask fails, and
the server answers every request of that user with a 500 until the hub is back. In the full test run, an upgrade
whose new hub crash-looped kept the hub down ~80 s before the automatic rollback brought the old one back; the
user's server failed 129 requests in a row (13 s) when the answer it had kept since an earlier test expired in
that window. Timing-dependent: it needs an expiry inside the outage, so a longer outage hits more users.

Here, only while the hub cannot answer (no connection, or a 5xx from the hub or from traefik's route to it): the
answer the hub last gave for that same token, on this server, is used if the hub gave it at most
cache_max_age + STALE_GRACE_S ago. The journal says so once per outage. Nothing else changes: a token the hub
never identified here is refused as before, a 4xx from the hub is not an outage, and with the hub back every
answer is the hub's again. A token revoked while the hub is down could not be revoked anyway; one revoked just
before works here up to STALE_GRACE_S longer than upstream's cache already allows, for this server only, whose
user it names.
Enabled for every server of the environment by jupyter-config/jupyter_server_config.d/barehub.json.
"""
from __future__ import annotations

import logging
import time

from tornado.web import HTTPError

STALE_GRACE_S = 900  # an answer past its expiry serves at most this long (a failed upgrade took ~110 s here)

log = logging.getLogger(__name__)


class HubAway(HTTPError):
    """The hub did not answer, or answered with a server error: the same status and message as upstream's."""


def keep_answers_through_outages(hub_auth, grace: float = STALE_GRACE_S, clock=time.monotonic) -> None:
    """Wrap `hub_auth` (a HubAuth) so that a failed ask falls back to the hub's last answer for the same key."""
    ask_hub, check = hub_auth._api_request, hub_auth._check_hub_authorization
    answers: dict = {}  # cache key -> (when the hub gave it, on the cache's clock; the answer)
    away = {"warned": False}

    async def api_request(*args, **kwargs):
        try:
            return await ask_hub(*args, **kwargs)
        except HTTPError as e:
            no_connection = e.__context__ is not None and not isinstance(e.__context__, HTTPError)
            if e.status_code == 502 or no_connection:  # upstream's two ways of saying the hub is not there
                raise HubAway(e.status_code, e.log_message, *e.args, reason=e.reason) from e
            raise

    async def check_hub_authorization(url, api_token, cache_key=None, use_cache=True):
        try:
            answer = await check(url, api_token, cache_key=cache_key, use_cache=use_cache)
        except HubAway:
            kept = answers.get(cache_key) if use_cache and cache_key is not None else None
            if kept is None or clock() - kept[0] > hub_auth.cache_max_age + grace:
                raise
            if not away["warned"]:
                log.warning("barehub: the hub does not answer; its last answers for this server's users are "
                            "used meanwhile (each for up to %d s past its expiry)", grace)
                away["warned"] = True
            return kept[1]
        away["warned"] = False
        given = getattr(hub_auth.cache, "timestamps", {}).get(cache_key)  # when the hub gave the cached answer
        if use_cache and given is not None and answers.get(cache_key, (None,))[0] != given:  # a new answer only:
            answers[cache_key] = (given, answer)  # not on each request the cache answered
            forget_old_answers(answers, clock() - hub_auth.cache_max_age - grace)
        return answer

    hub_auth._api_request = api_request
    hub_auth._check_hub_authorization = check_hub_authorization


def forget_old_answers(answers: dict, before: float) -> None:
    for key in [key for key, (given, _) in answers.items() if given < before]:
        del answers[key]


def _jupyter_server_extension_points():
    return [{"module": "barehub.hub_outage"}]


def _load_jupyter_server_extension(serverapp) -> None:
    hub_auth = getattr(serverapp.identity_provider, "hub_auth", None)
    if hub_auth is not None:  # a server a hub started (jupyterhub-singleuser); a plain `jupyter lab` has none
        keep_answers_through_outages(hub_auth)
