"""Logins through a site's OpenID Connect provider (Keycloak, Azure AD, LemonLDAP::NG, ...).

oauthenticator's GenericOAuthenticator (17.4, the newest) does the OAuth work: the code flow, the
token exchange, allowed and admin groups, auth_state, the refresh of expired access tokens. This class
adds only what a site needs and it does not do:

- **endpoints from the provider's discovery document** (`issuer` + /.well-known/openid-configuration),
  read by the hub when it is first needed (a login starts), not while the configuration loads: a fragment
  that fetched it then would keep the hub from starting whenever the provider is down. It is kept
  `discovery_max_age` seconds, and a failure to read it `discovery_retry_delay` seconds, with one request
  at a time: the login page is open to anyone, and must not let them make the hub send a request each.
- **the client secret read from a file** at each token request: no fragment holds it, a rotated secret
  needs no reload, and a file others can read (or a link) is refused, named in the hub's log.
- **what went wrong, said twice**: when the provider cannot be reached, its certificate is not trusted,
  or it refuses the hub's client credentials, the user gets a page that says so (not "500: Unhandled
  error") and the admin one log line that names the URL and the setting to fix. A provider that is down
  does not sign out users who are signed in: their refresh waits until it is back.
- **usernames**: a site's mail domain is removed from the claim (`carol@example.org` -> `carol`); case
  is JupyterHub's (it lowercases names). A name that is not a safe unix name (barehub.login_names) is
  refused at login, with a page that says so rather than upstream's "not authorized".
- **logout at the provider**: the hub's logout ends the provider's session too (its end_session_endpoint,
  with the user's ID token), so a shared lab machine does not stay signed in there; the provider sends
  the browser back to the hub's login page.
"""
from __future__ import annotations

import asyncio
import os
import pwd
import re
import ssl
import stat
import time
from inspect import isawaitable
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

from oauthenticator.generic import GenericOAuthenticator
from oauthenticator.github import GitHubOAuthenticator
from oauthenticator.oauth2 import OAuthCallbackHandler, OAuthenticator, OAuthLoginHandler, OAuthLogoutHandler
from tornado import web
from tornado.httpclient import HTTPClientError
from tornado.log import app_log
from traitlets import Bool, Float, Unicode, default, observe

from barehub.base.errors import BarehubError
from barehub.base.records import open_no_follow
from barehub.login_names import SAFE_USERNAME_PATTERN

DISCOVERY_PATH = "/.well-known/openid-configuration"
USER_PAGE = {  # what the person at the browser is told, by problem
    "unreachable": (503, "The sign-in service cannot be reached right now. Please try again in a few minutes; "
                         "if it keeps happening, tell the hub's administrators."),
    "untrusted": (502, "The hub cannot sign you in: it does not trust the certificate of the sign-in service. "
                       "The hub's administrators can see why in the hub's log."),
    "client refused": (502, "The sign-in service refused the hub's own credentials, so the hub cannot sign you "
                            "in. The hub's administrators can see why in the hub's log."),
    "misconfigured": (502, "The hub's sign-in is misconfigured, so it cannot sign you in. The hub's "
                           "administrators can see why in the hub's log."),
    "provider error": (502, "The sign-in service answered with an error. Please try again; if it keeps "
                            "happening, tell the hub's administrators."),
    "unverified": (403, "Your mail address is not verified at the sign-in service, so the hub cannot use it as "
                        "your name. Verify it there, then sign in again."),
    "unsafe name": (403, "Your name at the sign-in service cannot be the name of an account on this hub. The hub's "
                         "administrators can see why in the hub's log."),
}


class ProviderProblem(web.HTTPError):
    """A problem between the hub and the provider: the user's page says `kind`'s text, the hub's log says
    `admin_message` (logged once, where it is raised; `log=False` for the same problem told to another user
    while it is remembered, so that anyone reloading the login page cannot fill the log)."""

    def __init__(self, kind: str, admin_message: str, log: bool = True):
        status, user_message = USER_PAGE[kind]
        super().__init__(status, reason=None)
        self.kind = kind
        self.jupyterhub_message = user_message  # JupyterHub's error page shows this text
        self.admin_message = admin_message
        if log:
            app_log.error("OIDC: %s", admin_message)


def classify(error: BaseException, url: str, ca_file: str, secret_file: str, token_url: str = "") -> ProviderProblem:
    """The ProviderProblem for an exception from a request to the provider (at `url`, unless the answer
    says which); re-raises what is not about the provider."""
    if isinstance(error, ProviderProblem):
        return error
    if not isinstance(error, (OSError, HTTPClientError)):
        raise error
    response = getattr(error, "response", None)
    where = urlunsplit(urlsplit(getattr(response, "effective_url", None) or url)._replace(query=""))
    if isinstance(error, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
        trust = f"CA_FILE {ca_file} did not verify it" if ca_file else "the system's CAs did not verify it"
        detail = getattr(error, "verify_message", "") or str(error)
        return ProviderProblem("untrusted", f"the identity provider's certificate at {where} is not trusted "
                                            f"({detail}; {trust}): set CA_FILE in the fragment to the CA that "
                                            f"signed it")
    if isinstance(error, HTTPClientError) and error.code != 599:
        body = response.body.decode("utf8", "replace")[:300].strip() if response is not None else ""
        at_token_endpoint = not token_url or where == urlunsplit(urlsplit(token_url)._replace(query=""))
        if "invalid_client" in body or (error.code == 401 and at_token_endpoint):
            return ProviderProblem("client refused", f"the identity provider refused the hub's client credentials "
                                                     f"at {where} (HTTP {error.code} {body}): check "
                                                     f"CLIENT_ID and the secret in {secret_file}")
        return ProviderProblem("provider error", f"{where} answered HTTP {error.code}: {body}")
    return ProviderProblem("unreachable", f"the identity provider at {where} cannot be reached from the hub: "
                                          f"{error}")  # refused, no route, unknown name, timeout (599)


def strip_domain(name: str, domain: str) -> str:
    """`name` without "@`domain`" (compared without case); names of other domains are left whole, so they
    can never become a local user's name."""
    local, at, theirs = name.rpartition("@")
    if domain and at and theirs.lower() == domain.lower().lstrip("@"):
        return local
    return name


def read_client_secret(path: str, allowed_owners: tuple[int, ...]) -> str:
    """The client secret from `path`: a regular file (a link is refused, never followed), no group or other
    permission bits, owned by root or the hub's user. Raises BarehubError naming the file."""
    try:
        fd = open_no_follow(Path(path))
    except FileNotFoundError:
        raise BarehubError(f"the client secret file {path} does not exist",
                           f"write the secret from the provider there: install -m 600 /dev/stdin {path}")
    except PermissionError:
        me = pwd.getpwuid(os.getuid()).pw_name
        raise BarehubError(f"the client secret file {path} cannot be read by the hub's user {me}",
                           f"chown {me} {path} (a --hub-user install runs the hub as {me})")
    with os.fdopen(fd) as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BarehubError(f"the client secret file {path} is not a regular file", "make it one, mode 0600")
        if st.st_mode & 0o077 or st.st_uid not in allowed_owners:
            raise BarehubError(f"the client secret file {path} has mode {st.st_mode & 0o777:04o} and owner uid "
                               f"{st.st_uid}: others could read or change it",
                               f"chown root {path} && chmod 600 {path} (or the hub's user, for --hub-user)")
        secret = f.read().strip()
    if not secret:
        raise BarehubError(f"the client secret file {path} is empty", "write the secret from the provider there")
    return secret


def ca_file_problem(path: str, allowed_owners: tuple[int, ...]) -> str | None:
    """Why the hub must not use `path` as the CA it trusts for the provider, if it must not: whoever can
    change the file can make the hub accept their own "provider" (and its users)."""
    try:
        st = os.stat(path)  # a link is fine (/etc/ssl/certs has them); what it leads to is checked
    except OSError as e:
        return f"CA_FILE {path} cannot be read ({e.strerror}): set CA_FILE to the CA certificate of the provider's"
    if st.st_mode & 0o022 or st.st_uid not in allowed_owners:
        return (f"CA_FILE {path} (mode {st.st_mode & 0o777:04o}, owner uid {st.st_uid}) can be changed by others, "
                f"who could then make the hub trust their own provider: chown root {path} && chmod 644 {path}")
    for directory in Path(path).resolve().parents:  # or replaced, by whoever may write its directory
        st = os.stat(directory)
        if (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX) or st.st_uid not in allowed_owners:
            return (f"CA_FILE {path} is in {directory} (mode {st.st_mode & 0o777:04o}, owner uid {st.st_uid}), "
                    f"where others can replace it: keep the CA in a directory only root can write")
    return None


class OIDCLoginHandler(OAuthLoginHandler):
    async def get(self):
        """A login starts with the provider's discovery document, at most `discovery_max_age` seconds old:
        a provider that is down or untrusted is then the hub's clear page, not the browser's connection
        error after a redirect to it (within that bound), and moved endpoints are followed. Not read afresh
        at each login: anyone may open this page, as often as they like."""
        await self.authenticator.prepare_provider()
        super().get()


class OIDCLogoutHandler(OAuthLogoutHandler):
    """Remembers the user's ID token before the hub forgets the user, then sends the browser to the
    provider's end_session_endpoint."""

    _id_token = None

    async def handle_logout(self):
        await super().handle_logout()
        user = self.current_user
        if user is not None and self.authenticator.enable_auth_state:
            auth_state = await user.get_auth_state() or {}
            self._id_token = auth_state.get("id_token")

    async def render_logout_page(self):
        url = await self.authenticator.end_session_url(self._id_token, self)
        if url:
            self.redirect(url)
        else:
            await super().render_logout_page()


class ProviderLogin(OAuthenticator):
    """What every provider's login gets here: the client secret from a file, a problem with the provider
    said to the user (a page) and to the admin (a log line) instead of an unhandled error, and names that
    must be safe unix names."""

    client_secret_file = Unicode(config=True, help="""File with the client secret (0600, root's or the hub
        user's). Read at each token request: a rotated secret needs no reload.""")
    ca_file = Unicode(config=True, help="""CA certificate(s) the provider's HTTPS certificate is checked
        against (a site CA); empty: the system's CAs.""")

    @default("username_pattern")
    def _username_pattern_default(self):
        """Names are the provider's, and a provider may let users register any they like: refuse at login those
        that could never be a safe unix account, URL or traefik rule (barehub.login_names says which)."""
        return SAFE_USERNAME_PATTERN

    @default("username_regex")
    def _username_regex_default(self):
        """JupyterHub compiles username_pattern only when it is set (an observer): a default pattern would
        otherwise never be checked."""
        return re.compile(self.username_pattern) if self.username_pattern else None

    @observe("ca_file")
    def _ca_file_changed(self, change):
        if change.new:
            self.http_request_kwargs = {**self.http_request_kwargs, "ca_certs": change.new}

    async def prepare_provider(self) -> None:
        """Before each exchange with the provider: the CA file is one to trust, the secret is read."""
        self.check_ca_file()
        if self.client_secret_file:
            try:
                self.client_secret = read_client_secret(self.client_secret_file, (0, os.getuid()))
            except BarehubError as e:
                raise ProviderProblem("misconfigured", f"{e.message}: {e.hint}") from None

    def check_ca_file(self) -> None:
        problem = ca_file_problem(self.ca_file, (0, os.getuid())) if self.ca_file else None
        if problem:
            raise ProviderProblem("misconfigured", problem)

    def problem(self, error: BaseException, url: str) -> ProviderProblem:
        return classify(error, url, self.ca_file, self.client_secret_file, self.token_url)

    async def authenticate(self, handler, data=None, **kwargs):
        await self.prepare_provider()
        try:
            auth_model = await super().authenticate(handler, data, **kwargs)
        except Exception as e:  # noqa: BLE001 (classify re-raises what it does not know)
            raise self.problem(e, self.token_url) from e
        if auth_model:
            self.check_name(auth_model["name"])
        return auth_model

    def check_name(self, name: str) -> None:
        """The name as JupyterHub will check it (normalized: lowercased) against username_pattern. JupyterHub
        refuses it too, but with oauthenticator's page for users outside the allowed groups, which would send
        the user to ask for a group; here the page says the name is the problem, and the log names it."""
        normalized = self.normalize_username(name)
        if not self.validate_username(normalized):
            raise ProviderProblem("unsafe name", f"the provider's name {normalized[:64]!r} for a user signing in is "
                                                 f"not a valid name here (username_pattern "
                                                 f"{self.username_pattern!r}): login refused")

    async def check_allowed(self, username, auth_model):
        """Upstream's check (GitHub asks the provider here, for organization membership)."""
        try:
            return await super().check_allowed(username, auth_model)
        except Exception as e:  # noqa: BLE001
            raise self.problem(e, self.token_url) from e

    async def refresh_user(self, user, handler=None, **kwargs):
        """Upstream's refresh (the provider asked again with the access token, a new one got with the refresh
        token when it is refused, a new login when both are), and then the same check as at login: upstream
        updates the groups of a refreshed user but does not ask again whether they may still use the hub, so
        a user the site removed from the allowed groups stayed signed in until the cookie expired.

        While the hub cannot ask the provider (unreachable, untrusted, an error of the provider or of the hub's
        own settings: each logged), the user stays signed in with what the hub has, and the next request
        after `auth_refresh_age` asks again: signing everybody out would only send them to the error page.
        (When the access token has expired and the token endpoint fails, upstream asks for a new login.)"""
        try:
            await self.prepare_provider()
            refreshed = await super().refresh_user(user, handler, **kwargs)
        except Exception as e:  # noqa: BLE001
            if self.problem(e, self.token_url).kind == "unverified":  # logged; or re-raised, if not the provider's
                return False
            app_log.warning("OIDC: %s stays signed in until the provider can be asked again", user.name)
            return True
        if isinstance(refreshed, dict) and not await self.still_allowed(user.name, refreshed):
            return False
        return refreshed

    async def still_allowed(self, name: str, auth_model: dict) -> bool:
        if auth_model.get("name") != name:
            app_log.warning("OIDC: %s's claims now name %r: a new login is needed", name, auth_model.get("name"))
            return False
        not_blocked = self.check_blocked_users(name, auth_model)  # JupyterHub's is plain, a subclass's may be async
        if isawaitable(not_blocked):
            not_blocked = await not_blocked
        allowed = not_blocked and await self.check_allowed(name, auth_model)
        if not allowed:
            app_log.warning("OIDC: %s may no longer use the hub (allowed groups or blocked users): signed out", name)
        return bool(allowed)


class OIDCAuthenticator(ProviderLogin, GenericOAuthenticator):
    login_handler = OIDCLoginHandler
    callback_handler = OAuthCallbackHandler
    logout_handler = OIDCLogoutHandler

    issuer = Unicode(config=True, help="""The provider's issuer URL, as its discovery document says it
        (Keycloak: https://HOST/realms/REALM). authorize_url, token_url and userdata_url come from
        ISSUER/.well-known/openid-configuration.""")
    username_domain = Unicode(config=True, help="""Removed from the end of the username claim
        (carol@example.org -> carol when "example.org"); names of other domains stay whole.""")
    logout_from_provider = Bool(True, config=True, help="""The hub's logout also ends the provider's
        session (its end_session_endpoint), then the provider sends the browser to the hub's login page.""")
    discovery_max_age = Float(60, config=True, help="""Seconds the discovery document is used before it is
        read again, by logins, refreshes and logouts alike: endpoints the provider moves, or a provider that
        went down, are noticed at a login within this time; the hub asks at most once in this time.""")
    discovery_retry_delay = Float(5, config=True, help="""Seconds a failure to read the discovery document
        is told to every login (logged once) before the hub asks the provider again.""")

    _provider: dict | None = None  # the last document read, and when (time.monotonic())
    _provider_read_at = 0.0
    _failure: ProviderProblem | None = None  # the last failure to read it, and when
    _failed_at = 0.0
    _reading: asyncio.Future | None = None  # the request under way, which every caller meanwhile awaits

    # what an OpenID Connect provider releases: the variants (Keycloak, Azure AD) set only what differs
    @default("scope")
    def _scope_default(self):
        return ["openid", "profile", "email"]

    @default("username_claim")
    def _username_claim_default(self):
        return "preferred_username"

    @default("auth_state_groups_key")
    def _auth_state_groups_key_default(self):
        return "oauth_user.groups"

    @default("manage_groups")
    def _manage_groups_default(self):
        return True  # oauthenticator 17 takes allowed_groups/admin_groups only with it; the hub's groups follow the provider's

    @default("enable_auth_state")
    def _enable_auth_state_default(self):
        return True  # tokens encrypted with the crypt key barehub generates; needed for refresh and logout

    async def discover(self) -> dict:
        """The provider's discovery document, and the endpoints set from it. Bounded, as the login page that
        needs it is anyone's: one read per `discovery_max_age`, a failure told again (not logged again) for
        `discovery_retry_delay`, and callers arriving while a read is under way all wait for that one.
        One age for logins, refreshes and logouts: as they all share the one read, a short age costs the
        provider one request per age whatever the traffic; a longer one kept for refreshes would save
        almost nothing, and let a refresh use endpoints a login no longer does."""
        now = time.monotonic()
        if self._provider is not None and now - self._provider_read_at < self.discovery_max_age:
            return self._provider
        if self._failure is not None and now - self._failed_at < self.discovery_retry_delay:
            raise ProviderProblem(self._failure.kind, self._failure.admin_message, log=False)
        if self._reading is None:
            self._reading = asyncio.ensure_future(self._read_discovery())
        return await asyncio.shield(self._reading)  # a caller that goes away does not cancel the others' read

    async def _read_discovery(self) -> dict:
        """One read, remembered as a success or a failure before the next caller can start another."""
        try:
            document = await self._fetch_discovery()
            self._provider, self._provider_read_at, self._failure = document, time.monotonic(), None
            return document
        except ProviderProblem as problem:  # an error the hub does not know (a bug) is not remembered
            self._failure, self._failed_at = problem, time.monotonic()
            raise
        finally:
            self._reading = None

    async def _fetch_discovery(self) -> dict:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        try:
            document = await self.httpfetch(url, label="reading the discovery document")
        except Exception as e:  # noqa: BLE001
            if isinstance(e, ValueError) and not isinstance(e, OSError):  # ssl's errors are ValueErrors too
                raise ProviderProblem("misconfigured", f"{url} is not a discovery document (not JSON): set "
                                                       f"ISSUER to the provider's issuer URL") from None
            raise self.problem(e, url) from e
        wanted = ["issuer", "authorization_endpoint", "token_endpoint"]
        wanted += [] if self.userdata_from_id_token else ["userinfo_endpoint"]
        # each a non-empty string: anything else would fail below as an error the hub does not know, which is
        # not remembered (_read_discovery), so a provider serving it would be asked again at every login
        given = document if isinstance(document, dict) else {}
        missing = [key for key in wanted if not given.get(key) or not isinstance(given[key], str)]
        if missing:
            raise ProviderProblem("misconfigured", f"{url} has no {', '.join(missing)}: set ISSUER to the "
                                                   f"provider's issuer URL")
        if document["issuer"].rstrip("/") != self.issuer.rstrip("/"):
            raise ProviderProblem("misconfigured", f"{url} says its issuer is {document['issuer']!r}, the "
                                                   f"fragment's ISSUER is {self.issuer!r}: set ISSUER to the "
                                                   f"provider's")
        self.authorize_url = document["authorization_endpoint"]
        self.token_url = document["token_endpoint"]
        if not self.userdata_from_id_token:  # the claims come from the ID token (Entra ID) or from userinfo
            self.userdata_url = document["userinfo_endpoint"]
        return document

    async def prepare_provider(self) -> None:
        await super().prepare_provider()
        await self.discover()

    def user_info_to_username(self, user_info):
        """The claim, the site's domain removed. A mail address the provider says it has not verified is not a
        name: whoever set it could otherwise sign in as that address's local user."""
        if self.username_claim == "email" and user_info.get("email_verified") is False:
            raise ProviderProblem("unverified", f"{user_info.get('email')!r} is not verified at the provider, and "
                                                f"USERNAME_CLAIM is email: refused")
        return strip_domain(super().user_info_to_username(user_info), self.username_domain)

    async def end_session_url(self, id_token: str | None, handler) -> str | None:
        """Where the hub's logout sends the browser: the provider's end_session_endpoint, back to the hub's
        login page; None (the hub's own logout page) when not wanted or the provider cannot say."""
        if not self.logout_from_provider:
            return None
        try:
            self.check_ca_file()  # the secret is not needed for this
            endpoint = (await self.discover()).get("end_session_endpoint")
        except ProviderProblem:
            return None  # logged; the user is signed out of the hub all the same
        if not endpoint:
            app_log.warning("OIDC: the provider has no end_session_endpoint; only the hub's session ended")
            return None
        login = self.get_callback_url(handler).rsplit("/oauth_callback", 1)[0] + "/login"
        params = {"post_logout_redirect_uri": login, "client_id": self.client_id}
        if id_token:
            params["id_token_hint"] = id_token
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(params)}"


class GitHubAuthenticator(ProviderLogin, GitHubOAuthenticator):
    """GitHub logins (not OpenID Connect: fixed endpoints), with the secret file and the clear pages."""
