"""The systemd units, rendered from the templates in systemd/ (pure)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from barehub import __version__
from barehub.fsutil import FileSpec
from barehub.base.paths import Paths
from barehub.package_files import base_config_file, shipped
from barehub.settings import Settings
from barehub.templating import render_template

HUB_UNIT = "jupyterhub.service"
PROXY_UNIT = "jupyterhub-proxy.service"
UNITS = (PROXY_UNIT, HUB_UNIT)  # start order
CERTS_PATH_UNIT = "jupyterhub-proxy-certs.path"
CERT_UNITS = (CERTS_PATH_UNIT, "jupyterhub-proxy-certs.service")  # only with --tls-cert/--tls-key
USAGE_TIMER = "barehub-usage.timer"
USAGE_UNITS = (USAGE_TIMER, "barehub-usage.service")  # the local servers' usage sampler (barehub.usage_ledger)
ALL_UNITS = UNITS + CERT_UNITS + USAGE_UNITS
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
USERS_SLICE = "jupyterhub-users.slice"  # every local user's server unit (hub_config), stopped by uninstall
USER_UNIT_NAME = "jupyter-{USERNAME}-singleuser"  # each user's default server's unit (barehub.local_spawner)
USER_UNITS_GLOB = "jupyter-*.service"  # every server's unit (a named one's is jupyter-USER-SERVER), in USERS_SLICE
HUB_RUNTIME_DIR = "jupyterhub"  # the hub unit's RuntimeDirectory=, /run/jupyterhub
USER_APPS_RUNTIME_DIR = "jupyterhub-apps"  # under /run: each server unit's own directory for its apps' sockets


def base_config_digest() -> str:
    """Part of the hub unit's text, so a changed base config restarts the hub on (re)install."""
    return hashlib.sha256(base_config_file().read_bytes()).hexdigest()[:12]


# What systemd allows only together with NoNewPrivileges= (it implies it for each of these).
NO_NEW_PRIVILEGES_SANDBOX = """\
NoNewPrivileges=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectClock=yes
ProtectHostname=yes
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@clock @module @raw-io @reboot @swap @mount @cpu-emulation @debug @obsolete
# AF_UNIX: systemd (systemd-run), munge, sssd; AF_NETLINK: getaddrinfo(AI_ADDRCONFIG) asks the kernel
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK"""

ROOT_HUB_PRIVILEGES = """\
# A root hub: PAM reads /etc/shadow (mode 0000 on RHEL-family systems: CAP_DAC_READ_SEARCH), and batch
# spawners submit as the user with `sudo -u USER` (no setuid bit needed when root runs it); only those
# capabilities are kept, and nothing it runs gains more. What this does not bound: as root, the hub may ask
# systemd for any unit (that is how it starts servers), so against code running in the hub itself this is
# a limit for mistakes and for exploits that cannot reach systemd, not a wall.
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE CAP_DAC_READ_SEARCH
""" + NO_NEW_PRIVILEGES_SANDBOX

HUB_USER_PRIVILEGES = """\
# A --hub-user hub holds no capability and can gain none (for spawners that need no local user switch:
# Kubernetes, remote ones). Sudo- and batch-based spawners need `--hub-sudo yes`.
CapabilityBoundingSet=
RemoveIPC=yes
""" + NO_NEW_PRIVILEGES_SANDBOX

HUB_USER_SUDO_PRIVILEGES = """\
# A --hub-user hub with --hub-sudo yes: sudo- and batch-based spawners start servers through the setuid
# sudo, limited by the site's sudoers rule. A process that must gain privileges through a setuid program
# cannot run with NoNewPrivileges=, and systemd implies it for every system call and namespace filter, so
# these are left out here: NoNewPrivileges, PrivateDevices, ProtectKernelTunables/Modules/Logs,
# ProtectClock, ProtectHostname, RestrictNamespaces, RestrictRealtime, RestrictSUIDSGID, LockPersonality,
# MemoryDenyWriteExecute, SystemCallArchitectures, SystemCallFilter, RestrictAddressFamilies.
# What sudo may gain is bounded to switching to the user (and reading shadow for its PAM account check).
CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE CAP_DAC_READ_SEARCH
RemoveIPC=yes"""


def hub_privileges(settings: Settings) -> str:
    """The hub unit's privilege lines: a root hub, a --hub-user hub, and one that must run sudo."""
    if settings.hub_user == "root":
        return ROOT_HUB_PRIVILEGES
    return HUB_USER_SUDO_PRIVILEGES if settings.hub_sudo else HUB_USER_PRIVILEGES


def render_units(paths: Paths, settings: Settings, unit_dir: Path = DEFAULT_UNIT_DIR,
                 traefik_version: str = "unknown") -> dict[Path, FileSpec]:
    """`traefik_version` (of the binary the proxy unit runs) is in the proxy unit's text, barehub's release
    is not: an upgrade that keeps traefik's version and config keeps traefik running."""
    values = dict(
        version=__version__,
        traefik_version=traefik_version,
        prefix=paths.prefix,
        env_bin=paths.env_bin,
        state_dir=paths.state,
        base_config=base_config_file(),
        base_config_digest=base_config_digest(),
        settings_digest=settings.hub_digest(),
        hub_user=settings.hub_user,
        hub_runtime_dir=HUB_RUNTIME_DIR,
        users_slice=USERS_SLICE,
        traefik_routes_dir=paths.traefik_routes_dir,
        hub_privileges=hub_privileges(settings),
        proxy_user=settings.proxy_user,
        traefik_bin=paths.traefik_bin,
        traefik_static=paths.traefik_static,
        acme_dir=paths.acme_dir,
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
    )
    templates = shipped("systemd")
    names = UNITS + USAGE_UNITS + (CERT_UNITS if settings.tls_cert else ())
    return {unit_dir / name: FileSpec(render_template(templates / name, **values)) for name in names}
