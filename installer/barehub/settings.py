"""Install settings: chosen once by flags, remembered in records/install.json (root's), re-applied on re-runs."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, field, make_dataclass
from pathlib import Path
from typing import Any, Mapping

from barehub.base.paths import Paths
from barehub.base import install_settings
from barehub.base.errors import BarehubError
from barehub.base.records import FORMAT

# the fields and their defaults come from the table of install settings (barehub.base.install_settings)
_Recorded = make_dataclass("_Recorded", [(s.name, s.type, field(default=s.default)) for s in install_settings.RECORDED],
                           frozen=True)


class Settings(_Recorded):
    """An install's settings: one field per remembered row of the table (install_settings.RECORDED)."""

    HUB_FIELDS = install_settings.HUB_FIELDS  # what the hub itself reads

    def hub_digest(self) -> str:
        """Changes only with the settings the hub reads: HTTPS and certificates are traefik's alone."""
        return hashlib.sha256(repr([getattr(self, f) for f in self.HUB_FIELDS]).encode()).hexdigest()[:12]

    @property
    def https(self) -> bool:
        return install_settings.https_on(asdict(self))

    @property
    def public_url(self) -> str:
        if self.https:
            host = self.acme_domains[0] if self.acme_domains else "localhost"
            return f"https://{host}" + ("" if self.https_port == 443 else f":{self.https_port}") + "/"
        return "http://localhost" + ("" if self.http_port == 80 else f":{self.http_port}") + "/"

    def ports(self) -> dict[str, int]:
        """Every port this install listens on (the metrics port only when it is on)."""
        ports = {name: getattr(self, name) for name in install_settings.DEFAULT_PORTS}
        return {**ports, "metrics_port": self.metrics_port} if self.metrics_port else ports

    def local_url(self, path: str) -> str:
        """`path` on the hub through traefik, from this machine (what health checks ask)."""
        if self.https:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with every given (non-None) value of `overrides` applied, as the table says
        (install_settings.merge: `no_https` turns HTTPS off; a new certificate source replaces the other one)."""
        return Settings(**install_settings.merge(asdict(self), overrides))


def load_settings(paths: Paths) -> Settings:
    """The remembered settings, or the defaults on a fresh install."""
    return load_settings_file(paths.settings_file)


def load_settings_file(path: Path) -> Settings:
    """The settings a record holds (records/install.json, or a backup's copy), or the defaults without one."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as e:
        raise BarehubError(f"cannot read {path}: {e}",
                           "fix or remove the file; it is rewritten from the flags of the next install")
    return Settings(**install_settings.merge(data, {}))  # as barehub.migrations left it


def render_settings(settings: Settings) -> str:
    return json.dumps({**asdict(settings), "format": FORMAT}, indent=2, sort_keys=True) + "\n"
