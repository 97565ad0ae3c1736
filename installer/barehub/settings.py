"""Install settings: chosen once by flags, remembered in state/install.json, re-applied on re-runs."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from barehub.errors import BarehubError
from barehub.paths import Paths


@dataclass(frozen=True)
class Settings:
    http_port: int = 80
    hub_port: int = 8081  # the hub's own API/pages, loopback only; traefik routes to it
    proxy_api_port: int = 8099  # traefik's API, loopback only, behind basic auth
    hub_user: str = "root"
    proxy_user: str = "barehub-proxy"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with every non-None value of `overrides` applied."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


def load_settings(paths: Paths) -> Settings:
    """The remembered settings, or the defaults on a fresh install."""
    try:
        data = json.loads(paths.settings_file.read_text())
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as e:
        raise BarehubError(f"cannot read {paths.settings_file}: {e}",
                           "fix or remove the file; it is rewritten from the flags of the next install")
    known = {f.name for f in fields(Settings)}
    return Settings(**{k: v for k, v in data.items() if k in known})


def render_settings(settings: Settings) -> str:
    return json.dumps(asdict(settings), indent=2, sort_keys=True) + "\n"
