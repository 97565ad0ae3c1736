"""barehub's defaults for JupyterHub, applied to the hub's traitlets Config before and after the fragments.

Kept as plain functions over a Config so they are testable without starting a hub.
"""
from __future__ import annotations

import base64
import hashlib
import json
import sys
from pathlib import Path

from traitlets import Bool, Float, Integer, TraitError
from traitlets.config import Config, Configurable

from barehub import culling, postgres, unix_accounts
from barehub.quotas import Quotas

from barehub.base.paths import Paths
from barehub.units import HUB_RUNTIME_DIR, USER_APPS_RUNTIME_DIR, USER_UNIT_NAME, USERS_SLICE
from barehub.secret_files import read_secret
from barehub.settings import Settings

# barehub's pages (the sessions page, barehub.sessions) and its page.html, which links them in the navigation bar
TEMPLATES = Path(__file__).parent / "templates"
IDLE_CULLER = "idle-culler"
BAREHUB_SERVICE = "barehub"
IDLE_TIMEOUT = 3600
# How long a server unit may take to stop before systemd kills it. systemd's default, 90 s, was seen once
# in a full test run: a server that did not exit after SIGTERM held its user's Stop (and Start) for 90 s
# and ended "failed (timeout)". A server shuts its kernels down in a few seconds when it works at all.
SERVER_STOP_TIMEOUT = "20s"


# jupyterhub-idle-culler's config file: barehub's decision (barehub.culling) as its cull_arbiter_hook
CULLER_CONFIG = Path(__file__).parent / "idle_culler_config.py"


def idle_culler_service(timeout: int = IDLE_TIMEOUT, *extra_args: str) -> dict:
    """The idle culler (jupyterhub-idle-culler, deciding with barehub.culling) as a hub-managed service. A fragment
    tunes it by calling this again; the site's limits (c.Barehub) reach it in its environment, see
    keep_base_services."""
    return {
        "name": IDLE_CULLER,
        "command": [sys.executable, "-P", "-m", "barehub.die_with_parent",  # -P: not from the hub's cwd (state/)
                    sys.executable, "-P", "-m", "jupyterhub_idle_culler", f"--config={CULLER_CONFIG}",
                    f"--timeout={timeout}", *extra_args],
    }


def api_password_hash(password: str) -> str:
    """The hash traefik checks on every call to its API: while a route goes live the hub asks every 5 ms, so each
    check is on a spawn's path, and a class's checks compete with its servers for the CPU.

    htpasswd's {SHA} (SHA-1, compared in constant time): 0.17 ms of traefik's CPU per API request here, against
    1.15 ms with bcrypt at its lowest cost (until 2026-12-07) and ~0.24 s at upstream's default cost (1000 requests
    each, traefik 3). A slow hash shields a guessable password from whoever reads the hash. This password is 256
    random bits, and its hash is in the rules file, readable by the hub and traefik only, who hold the API anyway.
    """
    return "{SHA}" + base64.b64encode(hashlib.sha1(password.encode()).digest()).decode()


def apply_base(c: Config, paths: Paths, settings: Settings) -> None:
    """Safe defaults that any fragment may override."""
    c.JupyterHub.bind_url = f"http://:{settings.http_port}"
    c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{settings.hub_port}"
    c.JupyterHub.db_url = postgres.hub_database_url(settings, paths.db_file)
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
    c.BarehubTraefikProxy.routes_file = str(paths.proxy_routes)
    c.BarehubTraefikProxy.staging_dir = str(paths.traefik_routes_dir)
    c.BarehubTraefikProxy.legacy_rules_file = str(paths.traefik_legacy_rules)

    apply_user_units(c)
    # user servers run JupyterLab from the hub env (jupyterhub-singleuser, started 0.8 s sooner: barehub.singleuser);
    # absolute, as sudo-based spawners reset PATH
    c.Spawner.cmd = [str(paths.env_bin / "barehub-singleuser")]
    c.Spawner.default_url = "/lab"

    c.JupyterHub.services = base_services(paths)
    c.JupyterHub.load_roles = base_roles()
    c.JupyterHub.template_paths = [str(TEMPLATES)]


def apply_user_units(c: Config) -> None:
    """Each local user's server is its own systemd unit, running as the user, in one slice
    (jupyterhub-systemdspawner, as TLJH uses: a maintained spawner over `systemd-run`; barehub's subclass gives
    each named server its own unit, see barehub.local_spawner).

    Outside the hub's cgroup, servers survive hub stops, restarts and reloads without KillMode=process,
    so the hub unit can be sandboxed and stops cleanly; per-user limits (`c.Spawner.mem_limit`,
    `cpu_limit`) are the unit's MemoryMax/CPUQuota; `systemctl stop USERS_SLICE` ends every server.
    The unit's environment file (it carries the server's API token) is written into the hub's own
    runtime directory (0700 root), not into /run at large: the sandboxed hub can write nowhere else there,
    and no user can reach it to plant a link.
    """
    c.JupyterHub.spawner_class = "barehub.local_spawner.LocalSpawner"
    c.SystemdSpawner.slice = USERS_SLICE
    c.SystemdSpawner.unit_name_template = USER_UNIT_NAME
    c.SystemdSpawner.unit_extra_properties = {**user_unit_properties(), "TimeoutStopSec": SERVER_STOP_TIMEOUT,
                                              "CPUAccounting": "yes"}


def user_unit_properties() -> dict[str, str]:
    """The server unit's RuntimeDirectory, where the spawner writes its environment file: by JupyterHub's
    numeric user id, as systemd splits this value at whitespace and a (directory-service) user name may
    contain a space ("john user" would create and chown /run/user). That one lies in the hub's own 0700
    /run/jupyterhub, which the user cannot enter; the second, /run/jupyterhub-apps/ID, is the user's alone (0700,
    hers), where the server's apps listen on unix sockets (barehub.apps). systemd removes both when the unit stops.
    (CPUAccounting, set beside it: the unit's own cgroup counts its CPU on a cgroup v1 host too, which the
    server reads to count a busy terminal or build as activity, barehub.server_activity.)"""
    return {"RuntimeDirectory": f"{HUB_RUNTIME_DIR}/users/{{USERID}} {USER_APPS_RUNTIME_DIR}/{{USERID}}"}


def base_services(paths: Paths) -> list[dict]:
    return [idle_culler_service(), {"name": BAREHUB_SERVICE, "api_token": read_secret(paths.barehub_api_token)}]


def base_roles() -> list[dict]:
    return [
        # admin:server_state: what barehub's spawners keep for the culler (busy since, kept until: barehub.server_work)
        {"name": IDLE_CULLER, "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers",
                                         "admin:server_state"],
         "services": [IDLE_CULLER]},
        {"name": BAREHUB_SERVICE, "scopes": ["list:users", "read:users", "read:servers", "delete:servers"],
         "services": [BAREHUB_SERVICE]},
    ]


class Barehub(Configurable):
    """barehub's own switches, set in a fragment like any JupyterHub option (`c.Barehub.idle_culler = False`)."""

    idle_culler = Bool(True, config=True, help="Run the idle culler, which stops servers left idle.")
    idle_timeout = Integer(IDLE_TIMEOUT, min=0, config=True,
                           help="Seconds of inactivity after which the culler stops a server (0: never for idleness). "
                                "A server with a busy kernel or using CPU is active (barehub.server_activity).")
    max_busy = Integer(0, min=0, config=True,
                       help="Seconds a server may stay busy without a break before the culler stops it "
                            "(a runaway loop must not hold a GPU for ever); 0: no cap.")
    max_age = Integer(0, min=0, config=True,
                      help="Seconds after its start at which the culler stops a server whatever it does; 0: none.")
    profile_limits = culling.ProfileLimits(
        config=True, help='Limits per spawn profile (its label, user_options["profile"]), over the ones above: '
                          '{"1 GPU": {"idle_timeout": 900, "max_busy": 4 * 3600, "max_age": 86400}}.')
    keep_max = Integer(24 * 3600, min=0, config=True,
                       help="Longest a user may ask to keep a server running (\"keep until\"), in seconds from the "
                            "moment she asks; 0: users cannot.")
    cpu_active_percent = Float(10.0, min=0, config=True,
                               help="CPU use of a server (percent of one CPU, over a few seconds, from its own cgroup "
                                    "or process tree) at which it counts as active, as a busy kernel does.")
    quotas = Quotas(
        config=True, help="Monthly quotas of CPU and GPU hours (barehub.quotas): {'group:physics': {'cpu_hours': "
                          "5000, 'gpu_hours': 100}, 'user:ann': {'gpu_hours': 10}}; a spawn of a user whose month is "
                          "used up is refused, running servers are never stopped.")
    quota_admins = Bool(False, config=True, help="Whether the quotas apply to admins too (default: admins are exempt).")
    usage_refresh = Integer(60, min=5, config=True,
                            help="Seconds between two gatherings of the month's usage (systemd's ledger, sacct) for "
                                 "the usage pages, the metrics and the quotas.")
    uid_min = Integer(None, allow_none=True, config=True,
                      help="Lowest uid a server may run as (default: UID_MIN of /etc/login.defs).")
    uid_max = Integer(None, allow_none=True, config=True,
                      help="Highest uid a server may run as (default: UID_MAX of /etc/login.defs); directory "
                           "services often hand out larger uids.")
    servers_run_as_unix_users = Bool(None, allow_none=True, config=True,
                                     help="Whether the spawner runs servers as the login's unix account (default: "
                                          "yes for all but Kubernetes and Docker spawners), so that system "
                                          "accounts are refused.")


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


def apply_after_fragments(c: Config, paths: Paths, settings: Settings) -> None:
    """What barehub keeps whatever the fragments did, and defaults that depend on what they chose."""
    keep_base_services(c, paths)
    keep_user_unit_runtime_dir(c)
    keep_sessions_templates(c)
    default_local_access(c)
    keep_root_blocked(c)
    refuse_system_accounts(c, settings)
    keep_db_password(c, settings)


def cull_policy(c: Config) -> culling.Policy:
    """The site's culling limits (c.Barehub), validated: a wrong value raises TraitError naming the option."""
    section = Barehub(config=c)
    return culling.policy_from_config(section, section.idle_timeout)


def keep_base_services(c: Config, paths: Paths) -> None:
    """A fragment that assigns `c.JupyterHub.services` or `load_roles` (as JupyterHub's docs show) keeps
    barehub's idle culler and own service, with their roles; a fragment's entry of the same name wins.
    The culler goes only with the explicit `c.Barehub.idle_culler = False`; `c.Barehub.idle_timeout` tunes it.
    The culler, the fragment's own entry too, gets the site's limits (c.Barehub) in its environment and looks as
    often as the shortest of them needs."""
    dropped = set() if c.Barehub.get("idle_culler", True) else {IDLE_CULLER}
    as_set = base_services(paths)  # as the base config set them, before the fragments
    try:
        policy = cull_policy(c)
    except TraitError:  # `barehub check` names the fragment's line; the hub refuses to start with it (barehub.hub)
        policy = culling.Policy(culling.Limits(IDLE_TIMEOUT))
    kept = [idle_culler_service(policy.default.idle_timeout, f"--cull-every={policy.cull_every()}"), *as_set[1:]]
    services = with_base(c.JupyterHub.services, as_set, kept, dropped)
    for service in services:
        if isinstance(service, dict) and service.get("name") == IDLE_CULLER:
            service["environment"] = {culling.POLICY_ENV: json.dumps(policy.to_json()),
                                      **(service.get("environment") or {})}
    c.JupyterHub.services = services
    roles = with_base(c.JupyterHub.load_roles, base_roles(), base_roles(), dropped)
    for role in roles:  # a fragment's own culler role too: without the state, no cap and no keep-until
        if isinstance(role, dict) and role.get("name") == IDLE_CULLER and "admin:server_state" not in role.get(
                "scopes", []):
            role["scopes"] = [*role.get("scopes", []), "admin:server_state"]
    c.JupyterHub.load_roles = roles


def with_base(entries: list, as_set: list[dict], kept: list[dict], dropped: set[str]) -> list:
    """The fragments' own entries, then each base entry that no own entry of the same name replaces."""
    named = lambda entry: entry.get("name") if isinstance(entry, dict) else None  # noqa: E731
    own = [e for e in entries if e not in as_set and named(e) not in dropped]
    names = {named(e) for e in own} | dropped
    return own + [e for e in kept if e["name"] not in names]


def keep_user_unit_runtime_dir(c: Config) -> None:
    """A fragment that assigns `c.SystemdSpawner.unit_extra_properties` (as upstream's docs show) keeps the
    server units' RuntimeDirectory: without it the spawner writes to /run/jupyter-USER-singleuser, which the
    sandboxed hub cannot, and every spawn would fail. A fragment's own RuntimeDirectory wins."""
    properties = c.SystemdSpawner.get("unit_extra_properties")
    if isinstance(properties, dict) and "RuntimeDirectory" not in properties:
        c.SystemdSpawner.unit_extra_properties = {**user_unit_properties(), **properties}


def keep_sessions_templates(c: Config) -> None:
    """A fragment that sets its own `c.JupyterHub.template_paths` (a site's branding) keeps barehub's templates
    (the sessions page, and its link in the navigation bar) after its own, so that the site's page.html wins."""
    ours = str(TEMPLATES)
    paths = [str(p) for p in c.JupyterHub.get("template_paths", [])]
    if ours not in paths:
        c.JupyterHub.template_paths = [*paths, ours]


def default_local_access(c: Config) -> None:
    """With no fragment touching authentication, any local user who can log in with PAM may use
    the hub (JupyterHub's behaviour before 5.0). As soon as a fragment sets any allow config, or
    picks another authenticator, this steps aside, so a base `allow_all` can never silently widen a
    site's allow list."""
    if uses_default_pam(c) and not has_allow_config(c):
        c.PAMAuthenticator.allow_all = True


def keep_root_blocked(c: Config) -> None:
    """root never logs in, even when a fragment sets its own blocked_users, unless a fragment names root
    in an allow list or as an admin."""
    sections = [name for name in c if isinstance(c[name], Config)]
    if any("root" in (c[name].get(key) or ()) for name in sections for key in ("allowed_users", "admin_users")):
        return
    for name in sections:
        if "blocked_users" in c[name]:
            c[name].blocked_users = set(c[name].blocked_users) | {"root"}
    if "blocked_users" not in c.Authenticator:
        c.Authenticator.blocked_users = {"root"}


def keep_db_password(c: Config, settings: Settings) -> None:
    """The PostgreSQL password (--db-password-file), read now from the site's file (a rotated one is picked up by the
    next reload), handed to every engine that connects to the database (barehub.postgres.give_password_to_engines):
    never in the URL, which JupyterHub logs and writes into alembic's ini file. A fragment's own password (in
    db_kwargs' connect_args), or its own db_url, wins."""
    if not settings.db_password_file or c.JupyterHub.db_url != postgres.sqlalchemy_url(settings.db_url):
        return
    postgres.give_password_to_engines(settings.db_url, postgres.read_password(Path(settings.db_password_file)))


def refuse_system_accounts(c: Config, settings: Settings) -> None:
    """No server runs as root, a barehub service user or outside the site's uid range (barehub.unix_accounts
    says why and how): the check is made part of every spawn, ahead of any pre_spawn_hook."""
    section = c.Barehub
    unix_accounts.install_guard(unix_accounts.policy({settings.hub_user, settings.proxy_user},
                                                     section.get("uid_min"), section.get("uid_max")),
                                section.get("servers_run_as_unix_users"))
