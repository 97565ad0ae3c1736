"""barehub's defaults for JupyterHub, applied to the hub's traitlets Config before and after the fragments.

Kept as plain functions over a Config so they are testable without starting a hub.
"""
from __future__ import annotations

import sys

import bcrypt
from traitlets.config import Config

from barehub.paths import Paths
from barehub.secret_files import read_secret
from barehub.settings import Settings

IDLE_CULLER = "idle-culler"
BAREHUB_SERVICE = "barehub"
IDLE_TIMEOUT = 3600


def idle_culler_service(timeout: int = IDLE_TIMEOUT, *extra_args: str) -> dict:
    """The idle culler as a hub-managed service. A fragment tunes it by calling this again."""
    return {
        "name": IDLE_CULLER,
        "command": [sys.executable, "-m", "barehub.die_with_parent",
                    sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={timeout}", *extra_args],
    }


def api_password_hash(password: str) -> str:
    """The hash traefik checks on each API call: two per new route, so every spawn waits for them.

    Upstream hashes with bcrypt's default cost (~0.24 s of CPU per check here, and 100 spawns at
    once queue behind it). The password is 256 random bits and the API listens on loopback only,
    so bcrypt's lowest cost (~1 ms) gives up nothing that matters.
    """
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


def apply_base(c: Config, paths: Paths, settings: Settings) -> None:
    """Safe defaults that any fragment may override."""
    c.JupyterHub.bind_url = f"http://:{settings.http_port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    c.JupyterHub.db_url = f"sqlite:///{paths.db_file}"
    c.JupyterHub.cookie_secret_file = str(paths.cookie_secret)
    if paths.crypt_key.exists():  # installs older than this key get it on their next install run
        c.CryptKeeper.keys = [read_secret(paths.crypt_key)]
    # user servers outlive hub restarts and reloads
    c.JupyterHub.cleanup_servers = False

    c.JupyterHub.proxy_class = "barehub.traefik_proxy.BarehubTraefikProxy"
    c.Proxy.should_start = False  # traefik is its own systemd unit
    c.TraefikProxy.traefik_api_url = f"http://127.0.0.1:{settings.proxy_api_port}"
    c.TraefikProxy.traefik_api_username = "jupyterhub"
    password = read_secret(paths.traefik_api_password)
    c.TraefikProxy.traefik_api_password = password
    c.TraefikProxy.traefik_api_hashed_password = api_password_hash(password)
    c.TraefikProxy.traefik_entrypoint = "web"  # plain or TLS: see proxy_config
    c.TraefikProxy.traefik_api_entrypoint = "traefik"
    c.TraefikFileProviderProxy.dynamic_config_file = str(paths.traefik_rules)

    # user servers run JupyterLab from the hub env; absolute, as sudo-based spawners reset PATH
    c.Spawner.cmd = [str(paths.env_bin / "jupyterhub-singleuser")]
    c.Spawner.default_url = "/lab"

    c.JupyterHub.services = [
        idle_culler_service(),
        {"name": BAREHUB_SERVICE, "api_token": read_secret(paths.barehub_api_token)},
    ]
    c.JupyterHub.load_roles = [
        {
            "name": IDLE_CULLER,
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
            "services": [IDLE_CULLER],
        },
        {
            "name": BAREHUB_SERVICE,
            "scopes": ["list:users", "read:users", "read:servers"],
            "services": [BAREHUB_SERVICE],
        },
    ]


AUTH_SECTIONS = ("Authenticator", "LocalAuthenticator", "PAMAuthenticator")


def uses_default_pam(c: Config) -> bool:
    auth = c.JupyterHub.get("authenticator_class", "pam")
    name = auth if isinstance(auth, str) else getattr(auth, "__name__", "")
    return name in ("pam", "default") or name.endswith("PAMAuthenticator")


def has_allow_config(c: Config) -> bool:
    return any(
        key.startswith("allow") or key == "admin_users"
        for section in AUTH_SECTIONS
        if section in c
        for key in c[section]
    )


def apply_after_fragments(c: Config) -> None:
    """Defaults that depend on what the fragments chose.

    With no fragment touching authentication, any local user who can log in with PAM may use
    the hub (JupyterHub's behaviour before 5.0), except root. As soon as a fragment sets any
    allow config, or picks another authenticator, this steps aside, so a base `allow_all`
    can never silently widen a site's allow list.
    """
    if uses_default_pam(c) and not has_allow_config(c):
        c.PAMAuthenticator.allow_all = True
        if "blocked_users" not in c.Authenticator and "blocked_users" not in c.PAMAuthenticator:
            c.Authenticator.blocked_users = {"root"}
