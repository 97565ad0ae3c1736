"""Login names that could never be a safe unix account, URL or traefik route are refused at login: by
barehub's OAuth/OIDC authenticators by default, and by the shipped drop-ins (kubernetes.py whatever the
authenticator). And kubernetes.py's pods reach the hub through traefik, the hub staying on loopback."""
import asyncio
import logging
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from jupyterhub.auth import Authenticator
from traitlets.config import Config

from barehub.login_names import SAFE_USERNAME_PATTERN
from barehub.oidc import GitHubAuthenticator, OIDCAuthenticator, ProviderProblem
from barehub.package_files import shipped
from barehub.validation import load_config

REFUSED = ["bad`name", "a(b)", "x|y", "john user", "../x", "a,b", "o'hara", 'a"b', "-rf", ".hidden", "1234",
           "alice\n", "a" * 33, "host`) || Host(`evil"]
ACCEPTED = ["alice", "octo-cat", "j.doe", "_svc", "a" * 32]


def loaded(prefix, monkeypatch, name: str) -> Config:
    """The hub's config with the shipped drop-in `name`, as the hub loads it."""
    monkeypatch.setenv("KUBECONFIG", "")  # kubernetes.py sets it; restored after the test
    (prefix.config_d / f"40-{name}").write_text((shipped("jupyterhub_config.d") / name).read_text())
    return load_config(prefix)


def accepts(authenticator: Authenticator, name: str) -> bool:
    """Whether JupyterHub lets `name` log in, as get_authenticated_user checks it: normalized, then validated."""
    return authenticator.validate_username(authenticator.normalize_username(name))


@pytest.fixture
def kubernetes(prefix, monkeypatch) -> Config:
    return loaded(prefix, monkeypatch, "kubernetes.py")


def test_kubernetes_keeps_the_hub_on_loopback_and_sends_pods_through_the_public_url(kubernetes):
    """A hub bound to 0.0.0.0 put its plain-HTTP login pages on every interface; pods use traefik's HTTPS."""
    bind = urlsplit(kubernetes.JupyterHub.hub_bind_url)
    assert bind.hostname in ("127.0.0.1", "localhost", "::1"), kubernetes.JupyterHub.hub_bind_url
    assert "hub_connect_url" not in kubernetes.JupyterHub
    assert kubernetes.KubeSpawner.hub_connect_url == "https://hub.example.org"


def test_kubernetes_pods_get_the_hubs_api_at_its_public_url(kubernetes, monkeypatch):
    """JUPYTERHUB_API_URL is hub_connect_url + the hub's API path (the base URL in it): what pods ask."""
    from kubespawner import KubeSpawner, spawner as kubespawner

    monkeypatch.setattr(kubespawner, "load_config", lambda **_: None)  # no cluster: only the environment is made
    monkeypatch.setattr(kubespawner, "shared_client", lambda *_: None)
    spawner = KubeSpawner(_mock=True, config=Config({"KubeSpawner": kubernetes.KubeSpawner}))
    spawner.hub = SimpleNamespace(api_url="http://127.0.0.1:8081/jupyter/hub/api", base_url="/jupyter/hub/",
                                  public_host="")
    spawner.user = SimpleNamespace(name="alice", url="/jupyter/user/alice/")
    spawner.api_token = "t"
    env = spawner.get_env()
    assert env["JUPYTERHUB_API_URL"] == "https://hub.example.org/jupyter/hub/api"


@pytest.mark.parametrize("name", REFUSED)
def test_kubernetes_refuses_unsafe_names_whatever_the_authenticator(kubernetes, name):
    assert not accepts(Authenticator(config=kubernetes), name)


@pytest.mark.parametrize("name", ACCEPTED + ["Octo-Cat", "J.Doe"])
def test_kubernetes_accepts_unix_names(kubernetes, name):
    assert accepts(Authenticator(config=kubernetes), name)


@pytest.mark.parametrize("drop_in", ["oidc.py", "oidc-keycloak.py", "oidc-azuread.py", "github.py"])
def test_the_login_drop_ins_set_the_safe_pattern(prefix, monkeypatch, drop_in):
    config = loaded(prefix, monkeypatch, drop_in)
    section = "GitHubAuthenticator" if drop_in == "github.py" else "OIDCAuthenticator"
    assert config[section].username_pattern == SAFE_USERNAME_PATTERN


@pytest.mark.parametrize("cls", [OIDCAuthenticator, GitHubAuthenticator])
def test_barehubs_oauth_authenticators_check_the_safe_pattern_by_default(cls):
    """A traitlets default does not run JupyterHub's observer that compiles the pattern: checked here."""
    authenticator = cls()
    assert authenticator.username_pattern == SAFE_USERNAME_PATTERN
    assert [name for name in REFUSED if accepts(authenticator, name)] == []
    assert [name for name in ACCEPTED + ["Octo-Cat"] if not accepts(authenticator, name)] == []
    assert accepts(cls(username_pattern=""), "a(b)")  # a site may choose otherwise


def signed_in(authenticator, user_info: dict) -> dict | None:
    """JupyterHub's login (get_authenticated_user) with the provider's answer `user_info`: upstream's token
    exchange and user request faked, everything after them real."""
    async def token_info(handler, params):
        return {"access_token": "a", "token_type": "bearer"}

    async def user(token):
        return user_info

    authenticator.build_access_tokens_request_params = lambda handler, data: {}
    authenticator.get_token_info = token_info
    authenticator.token_to_user = user
    return asyncio.run(authenticator.get_authenticated_user(SimpleNamespace(), None))


def oidc() -> OIDCAuthenticator:
    authenticator = OIDCAuthenticator(issuer="https://idp.example.org", allow_all=True)
    authenticator._provider, authenticator._provider_read_at = {}, float("inf")  # discovery done
    return authenticator


def test_a_github_login_is_lowercased_before_the_check():
    assert signed_in(GitHubAuthenticator(allow_all=True), {"login": "Octo-Cat", "email": None})["name"] == "octo-cat"
    assert signed_in(oidc(), {"preferred_username": "J.Doe"})["name"] == "j.doe"


@pytest.mark.parametrize("make, claim", [(lambda: GitHubAuthenticator(allow_all=True), "login"),
                                         (oidc, "preferred_username")])
def test_an_unsafe_name_gets_a_page_that_says_so_and_a_log_line_that_names_it(make, claim, caplog):
    with caplog.at_level(logging.ERROR), pytest.raises(ProviderProblem) as e:
        signed_in(make(), {claim: "x`) || Host(`evil", "email": None})
    assert e.value.status_code == 403 and "cannot be the name of an account" in e.value.jupyterhub_message
    assert "'x`) || host(`evil'" in caplog.text and "login refused" in caplog.text
