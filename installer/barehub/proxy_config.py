"""traefik's static configuration, rendered from the install settings (pure)."""
from __future__ import annotations

from pathlib import Path

from barehub.fsutil import FileSpec
from barehub.paths import Paths, package_dir
from barehub.settings import Settings
from barehub.templating import render_template


def render_proxy_config(paths: Paths, settings: Settings) -> dict[Path, FileSpec]:
    text = render_template(
        package_dir() / "templates" / "traefik.toml",
        http_port=settings.http_port,
        proxy_api_port=settings.proxy_api_port,
        dynamic_dir=paths.traefik_dynamic_dir,
    )
    return {paths.traefik_static: FileSpec(text, 0o640, "root", settings.proxy_user)}
