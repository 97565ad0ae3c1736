"""barehub.oidc's own parts, as pure functions: the secret file, usernames, what a failed request to the
provider tells the user and the admin. The logins themselves run against a real provider (LemonLDAP::NG)
in tests/integration/test_oidc.py."""
import asyncio
import logging
import os
import ssl
from types import SimpleNamespace

from io import BytesIO

import pytest
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse

from barehub.base.errors import BarehubError
from barehub.oidc import (OIDCAuthenticator, ProviderProblem, ca_file_problem, classify, read_client_secret,
                          strip_domain)

ROOT_OR_ME = (0, os.getuid())


@pytest.mark.parametrize("claim, domain, name", [
    ("carol@example.org", "example.org", "carol"),
    ("Judy@Example.ORG", "example.org", "Judy"),  # JupyterHub lowercases it after
    ("carol@example.org", "@example.org", "carol"),
    ("mallory@evil.org", "example.org", "mallory@evil.org"),  # never a local user's name
    ("carol", "example.org", "carol"),
    ("carol@example.org", "", "carol@example.org"),
    ("a@b@example.org", "example.org", "a@b"),
])
def test_the_site_domain_is_removed_from_usernames_and_only_it(claim, domain, name):
    assert strip_domain(claim, domain) == name


def secret_file(tmp_path, text="s3cret\n", mode=0o600):
    path = tmp_path / "client-secret"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_the_client_secret_is_read_from_a_private_file(tmp_path):
    assert read_client_secret(str(secret_file(tmp_path)), ROOT_OR_ME) == "s3cret"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_a_secret_file_others_can_read_or_write_is_refused_naming_it_and_the_fix(tmp_path, mode):
    path = secret_file(tmp_path, mode=mode)
    with pytest.raises(BarehubError) as e:
        read_client_secret(str(path), ROOT_OR_ME)
    assert str(path) in e.value.message and f"{mode:04o}" in e.value.message
    assert f"chmod 600 {path}" in e.value.hint


def test_a_secret_file_of_another_owner_is_refused(tmp_path):
    path = secret_file(tmp_path)
    with pytest.raises(BarehubError, match="owner uid"):
        read_client_secret(str(path), (os.getuid() + 4242,))


def test_a_link_planted_as_the_secret_file_is_refused_not_followed(tmp_path):
    target = secret_file(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(BarehubError) as e:
        read_client_secret(str(link), ROOT_OR_ME)
    assert "s3cret" not in str(e.value.message) + e.value.hint


@pytest.mark.parametrize("text, says", [("\n", "is empty"), (None, "does not exist")])
def test_an_empty_or_missing_secret_file_is_named(tmp_path, text, says):
    path = secret_file(tmp_path, text=text) if text is not None else tmp_path / "missing"
    with pytest.raises(BarehubError, match=says) as e:
        read_client_secret(str(path), ROOT_OR_ME)
    assert str(path) in e.value.message


def test_a_ca_file_others_can_change_is_not_trusted(tmp_path):
    ca = tmp_path / "site-ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    ca.chmod(0o644)
    assert ca_file_problem(str(ca), ROOT_OR_ME) is None
    link = tmp_path / "link.pem"
    link.symlink_to(ca)  # as in /etc/ssl/certs
    assert ca_file_problem(str(link), ROOT_OR_ME) is None
    ca.chmod(0o666)
    assert "can be changed by others" in ca_file_problem(str(ca), ROOT_OR_ME)
    ca.chmod(0o644)
    assert "owner uid" in ca_file_problem(str(ca), (os.getuid() + 4242,))
    assert "cannot be read" in ca_file_problem(str(tmp_path / "missing.pem"), ROOT_OR_ME)
    tmp_path.chmod(0o777)  # others could rename another file over it
    assert "where others can replace it" in ca_file_problem(str(ca), ROOT_OR_ME)
    tmp_path.chmod(0o755)


def http_error(code: int, body: bytes) -> HTTPClientError:
    request = HTTPRequest("https://idp.example.org/oauth2/token?code=x")
    return HTTPClientError(code, response=HTTPResponse(request, code, buffer=BytesIO(body)))


def problem(error: BaseException, caplog) -> tuple[ProviderProblem, str]:
    with caplog.at_level(logging.ERROR):
        p = classify(error, "https://idp.example.org/oauth2/token?code=secret-code", "/etc/site-ca.pem",
                     "/etc/barehub/oidc-client-secret")
    return p, caplog.text


def test_an_untrusted_certificate_tells_the_admin_to_set_ca_file(caplog):
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    p, log = problem(error, caplog)
    assert p.status_code == 502 and "does not trust the certificate" in p.jupyterhub_message
    assert "https://idp.example.org/oauth2/token is not trusted" in log and "CA_FILE /etc/site-ca.pem" in log


def test_a_refused_client_secret_names_the_secret_file(caplog):
    p, log = problem(http_error(401, b'{"error":"invalid_client"}'), caplog)
    assert p.kind == "client refused" and p.status_code == 502
    assert "refused the hub's own credentials" in p.jupyterhub_message
    assert "/etc/barehub/oidc-client-secret" in log and "invalid_client" in log
    assert "secret-code" not in log  # the query (an authorization code) is not logged


def test_a_401_from_userinfo_is_not_blamed_on_the_client_secret(caplog):
    request = HTTPRequest("https://idp.example.org/oauth2/userinfo")
    error = HTTPClientError(401, response=HTTPResponse(request, 401, buffer=BytesIO(b"")))
    p = classify(error, "https://idp.example.org/oauth2/token", "", "/s", token_url="https://idp.example.org/oauth2/token")
    assert p.kind == "provider error" and "https://idp.example.org/oauth2/userinfo answered HTTP 401" in caplog.text


def test_invalid_client_with_400_is_a_refused_client_too(caplog):
    assert problem(http_error(400, b'{"error":"invalid_client"}'), caplog)[0].kind == "client refused"


@pytest.mark.parametrize("error", [ConnectionRefusedError(111, "Connection refused"),
                                   OSError(-2, "Name or service not known"), HTTPClientError(599, "Timeout")])
def test_an_unreachable_provider_says_try_again_later(caplog, error):
    p, log = problem(error, caplog)
    assert p.status_code == 503 and "cannot be reached right now" in p.jupyterhub_message
    assert "cannot be reached from the hub" in log


def test_an_error_it_does_not_know_is_not_disguised(caplog):
    with pytest.raises(KeyError):
        problem(KeyError("access_token"), caplog)
    with pytest.raises(ValueError):  # a message that mentions certificates is not a certificate problem
        problem(ValueError("No email in {'note': 'CERTIFICATE_VERIFY_FAILED'}"), caplog)


def test_a_mail_address_the_provider_has_not_verified_is_not_a_username():
    auth = OIDCAuthenticator(issuer="https://idp.example.org", username_claim="email", username_domain="example.org")
    assert auth.user_info_to_username({"email": "carol@example.org", "email_verified": True}) == "carol"
    assert auth.user_info_to_username({"email": "carol@example.org"}) == "carol"  # not said: the provider's mail
    with pytest.raises(ProviderProblem) as e:
        auth.user_info_to_username({"email": "carol@example.org", "email_verified": False})
    assert e.value.status_code == 403 and "not verified" in e.value.jupyterhub_message


def test_the_logout_goes_to_the_providers_end_session_and_back_to_the_hubs_login_page():
    auth = OIDCAuthenticator(issuer="https://idp.example.org", client_id="jupyterhub",
                             oauth_callback_url="https://hub.example.org/sub/hub/oauth_callback")
    auth._provider = {"end_session_endpoint": "https://idp.example.org/oauth2/logout"}
    auth._provider_read_at = float("inf")  # read: the discovery document is not asked for again
    url = asyncio.run(auth.end_session_url("ID.TOKEN", SimpleNamespace()))
    assert url == ("https://idp.example.org/oauth2/logout?post_logout_redirect_uri="
                   "https%3A%2F%2Fhub.example.org%2Fsub%2Fhub%2Flogin&client_id=jupyterhub&id_token_hint=ID.TOKEN")
    auth.logout_from_provider = False
    assert asyncio.run(auth.end_session_url("ID.TOKEN", SimpleNamespace())) is None


def test_a_refreshed_user_is_asked_again_whether_she_may_use_the_hub():
    """What refresh_user does with upstream's refreshed model (the provider's answer is the integration test's)."""
    auth = OIDCAuthenticator(issuer="https://idp.example.org", allowed_groups={"jupyter-users"},
                             blocked_users={"mallory"})
    still = lambda name, groups: asyncio.run(auth.still_allowed(name, {"name": name, "admin": None, "groups": groups}))  # noqa: E731
    assert still("carol", ["jupyter-users"]) is True
    assert still("carol", ["other"]) is False
    assert still("mallory", ["jupyter-users"]) is False
    assert asyncio.run(auth.still_allowed("carol", {"name": "carol2", "admin": None, "groups": ["jupyter-users"]})) is False


ISSUER = "https://idp.example.org"


class FakeProvider:
    """The discovery document as the hub's httpfetch gets it: each request counted, answered after a moment
    (logins arriving meanwhile must not send their own), the provider up or down."""

    def __init__(self):
        self.fetches = 0
        self.down = False
        self.authorization_endpoint = f"{ISSUER}/oauth2/authorize"

    async def httpfetch(self, url, label="", **kwargs):
        assert url == f"{ISSUER}/.well-known/openid-configuration"
        self.fetches += 1
        await asyncio.sleep(0.01)
        if self.down:
            raise ConnectionRefusedError(111, "Connection refused")
        return {"issuer": ISSUER, "authorization_endpoint": self.authorization_endpoint,
                "token_endpoint": f"{ISSUER}/oauth2/token", "userinfo_endpoint": f"{ISSUER}/oauth2/userinfo"}


class Clock:
    """barehub.oidc's time.monotonic, moved by the test (the event loop keeps the real one)."""
    now = 1000.0

    def monotonic(self):
        return self.now


@pytest.fixture
def discovery(monkeypatch):
    import barehub.oidc

    clock, provider = Clock(), FakeProvider()
    monkeypatch.setattr(barehub.oidc, "time", clock)
    auth = OIDCAuthenticator(issuer=ISSUER, client_id="jupyterhub", discovery_max_age=60, discovery_retry_delay=5)
    auth.httpfetch = provider.httpfetch
    return auth, provider, clock


async def logins(auth, n: int = 20) -> list:
    """n logins starting at once (OIDCLoginHandler.get's prepare_provider): what each got."""
    return await asyncio.gather(*(auth.prepare_provider() for _ in range(n)), return_exceptions=True)


def test_logins_within_the_bound_share_one_read_of_the_discovery_document(discovery):
    """The login page is anyone's: it must not make the hub send the provider a request per request."""
    auth, provider, clock = discovery

    async def scenario():
        assert await logins(auth) == [None] * 20
        assert provider.fetches == 1
        clock.now += 59
        provider.authorization_endpoint = f"{ISSUER}/v2/authorize"  # the provider moves an endpoint
        assert await logins(auth) == [None] * 20
        assert provider.fetches == 1 and auth.authorize_url == f"{ISSUER}/oauth2/authorize"
        clock.now += 2  # past the bound: read again, once, and the moved endpoint followed
        assert await logins(auth) == [None] * 20
        assert provider.fetches == 2 and auth.authorize_url == f"{ISSUER}/v2/authorize"

    asyncio.run(scenario())


def test_a_provider_that_cannot_be_reached_is_told_to_every_login_and_asked_again_after_a_delay(discovery, caplog):
    auth, provider, clock = discovery
    provider.down = True

    async def scenario():
        for problem in await logins(auth):
            assert isinstance(problem, ProviderProblem) and problem.status_code == 503
            assert "cannot be reached right now" in problem.jupyterhub_message
        assert provider.fetches == 1 and caplog.text.count("cannot be reached from the hub") == 1
        clock.now += 4  # within the delay: the same page, without asking or logging again
        [problem] = await logins(auth, 1)
        assert isinstance(problem, ProviderProblem) and problem.status_code == 503
        assert provider.fetches == 1 and caplog.text.count("cannot be reached from the hub") == 1
        provider.down = False
        clock.now += 2
        assert await logins(auth) == [None] * 20
        assert provider.fetches == 2

    with caplog.at_level(logging.ERROR):
        asyncio.run(scenario())


def test_a_failed_read_is_not_taken_for_the_document(discovery):
    """Once the document is too old, a provider that went down is the clear page, not the old endpoints."""
    auth, provider, clock = discovery

    async def scenario():
        assert await logins(auth, 1) == [None]
        provider.down = True
        clock.now += 61
        [problem] = await logins(auth, 1)
        assert isinstance(problem, ProviderProblem) and problem.kind == "unreachable"
        assert await auth.end_session_url("ID.TOKEN", SimpleNamespace()) is None  # the hub's own logout page
        assert provider.fetches == 2

    asyncio.run(scenario())
