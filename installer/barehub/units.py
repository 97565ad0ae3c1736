"""The systemd units, rendered from the templates in systemd/ (pure)."""
from __future__ import annotations

import hashlib
from pathlib import Path

from barehub import __version__
from barehub.fsutil import FileSpec
from barehub.paths import Paths, base_config_file, shipped
from barehub.settings import Settings
from barehub.templating import render_template

HUB_UNIT = "jupyterhub.service"
PROXY_UNIT = "jupyterhub-proxy.service"
UNITS = (PROXY_UNIT, HUB_UNIT)  # start order
CERTS_PATH_UNIT = "jupyterhub-proxy-certs.path"
CERT_UNITS = (CERTS_PATH_UNIT, "jupyterhub-proxy-certs.service")  # only with --tls-cert/--tls-key
ALL_UNITS = UNITS + CERT_UNITS
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")


def base_config_digest() -> str:
    """Part of the hub unit's text, so a changed base config restarts the hub on (re)install."""
    return hashlib.sha256(base_config_file().read_bytes()).hexdigest()[:12]


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
        proxy_user=settings.proxy_user,
        traefik_bin=paths.traefik_bin,
        traefik_static=paths.traefik_static,
        acme_dir=paths.acme_dir,
        tls_cert=settings.tls_cert,
        tls_key=settings.tls_key,
    )
    templates = shipped("systemd")
    names = UNITS + (CERT_UNITS if settings.tls_cert else ())
    return {unit_dir / name: FileSpec(render_template(templates / name, **values)) for name in names}
