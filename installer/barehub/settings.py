"""Install settings: chosen once by flags, remembered in records/install.json (root's), re-applied on re-runs."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping

from barehub.paths import Paths
from barehub.shared import DEFAULT_PORTS, BarehubError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


@dataclass(frozen=True)
class Settings:
    http_port: int = DEFAULT_PORTS["http_port"]
    https_port: int = DEFAULT_PORTS["https_port"]
    hub_port: int = DEFAULT_PORTS["hub_port"]  # the hub's own API/pages, loopback only; traefik routes to it
    proxy_api_port: int = DEFAULT_PORTS["proxy_api_port"]  # traefik's API, loopback only, behind basic auth
    http_address: str = ""  # where traefik's public ports listen: all addresses, or 127.0.0.1 behind a site proxy
    trusted_proxies: tuple[str, ...] = ()  # whose X-Forwarded-* headers traefik keeps
    metrics_port: int = 0  # traefik's Prometheus metrics on 127.0.0.1:PORT; 0: off
    hub_user: str = "root"
    hub_sudo: bool = False  # a --hub-user hub that runs sudo (sudo- and batch-based spawners): a looser sandbox
    proxy_user: str = "barehub-proxy"
    # HTTPS: certificates from an ACME CA (Let's Encrypt by default) ...
    acme_domains: tuple[str, ...] = ()
    acme_email: str = ""
    acme_server: str = LETSENCRYPT
    acme_ca_file: str = ""  # root CA of the ACME server's own HTTPS endpoint, if not a public one
    # ... or the site's own certificate files
    tls_cert: str = ""
    tls_key: str = ""

    HUB_FIELDS = ("http_port", "hub_port", "proxy_api_port", "hub_user")  # what the hub itself reads

    def hub_digest(self) -> str:
        """Changes only with the settings the hub reads: HTTPS and certificates are traefik's alone."""
        return hashlib.sha256(repr([getattr(self, f) for f in self.HUB_FIELDS]).encode()).hexdigest()[:12]

    @property
    def https(self) -> bool:
        return bool(self.acme_domains or self.tls_cert)

    @property
    def public_url(self) -> str:
        if self.https:
            host = self.acme_domains[0] if self.acme_domains else "localhost"
            return f"https://{host}" + ("" if self.https_port == 443 else f":{self.https_port}") + "/"
        return "http://localhost" + ("" if self.http_port == 80 else f":{self.http_port}") + "/"

    def ports(self) -> dict[str, int]:
        """Every port this install listens on (the metrics port only when it is on)."""
        ports = {name: getattr(self, name) for name in DEFAULT_PORTS}
        return {**ports, "metrics_port": self.metrics_port} if self.metrics_port else ports

    def local_url(self, path: str) -> str:
        """`path` on the hub through traefik, from this machine (what health checks ask)."""
        if self.https:
            return f"https://127.0.0.1:{self.https_port}{path}"
        return f"http://127.0.0.1:{self.http_port}{path}"

    def with_overrides(self, overrides: Mapping[str, Any]) -> "Settings":
        """These settings with every given (non-None) value of `overrides` applied.

        `no_https` turns HTTPS off; a new certificate source replaces the other one.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        if given.pop("no_https", False):
            given.update(acme_domains=(), tls_cert="", tls_key="")
        if "trusted_proxies" in given:  # `--trusted-proxy ''` clears them
            given["trusted_proxies"] = tuple(p for p in given["trusted_proxies"] if p)
        if isinstance(given.get("hub_sudo"), str):  # --hub-sudo yes|no
            given["hub_sudo"] = given["hub_sudo"] == "yes"
        if given.get("acme_domains"):
            given.update(acme_domains=tuple(given["acme_domains"]), tls_cert="", tls_key="")
        elif given.get("tls_cert"):
            given.update(acme_domains=())
        return replace(self, **given)


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
    values = {k: v for k, v in data.items() if k in known}
    for name in ("acme_domains", "trusted_proxies"):
        if name in values:
            values[name] = tuple(values[name])
    if "hub_sudo" not in data and values.get("hub_user", "root") != "root":
        values["hub_sudo"] = True  # a --hub-user hub from before the flag ran sudo: it keeps doing so
    return Settings(**values)


def render_settings(settings: Settings) -> str:
    return json.dumps(asdict(settings), indent=2, sort_keys=True) + "\n"
