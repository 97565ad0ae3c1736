"""The hub's proxy backend: jupyterhub-traefik-proxy's file provider, with rules the proxy user can read.

traefik runs as an unprivileged user, while the hub writes its routes. Upstream writes the rules
through a NamedTemporaryFile (mode 0600), which that user cannot read; this writes them 0640 into
the setgid rules directory, so they carry the proxy user's group. Nothing else is changed.
"""
from __future__ import annotations

import os
import tempfile

from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy
from jupyterhub_traefik_proxy.traefik_utils import TraefikConfigFileHandler
from traitlets import default, observe

from barehub.proxy_config import HUB_RETRY, HUB_TRANSPORT

RULES_MODE = 0o640


class GroupReadableRulesFile(TraefikConfigFileHandler):
    def atomic_dump(self, data) -> None:
        directory, name = os.path.split(os.path.abspath(self.file_path))
        # no .toml/.yaml suffix: traefik's directory watcher ignores the temp file
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
        try:
            os.fchmod(fd, RULES_MODE)
            with os.fdopen(fd, "w") as f:
                self._dump(data, f)
            os.replace(tmp, self.file_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class BarehubTraefikProxy(TraefikFileProviderProxy):
    """TraefikFileProviderProxy for an external, unprivileged traefik, with hub restarts hidden."""

    async def check_routes(self, user_dict, service_dict, routes=None):
        """At every hub start: rewrite the hub's own route in barehub's current form.

        JupyterHub keeps a hub route whose target did not change, so a route written by an older
        release (without the retry, say) would otherwise stay as it was across upgrades.
        """
        await self.add_hub_route(self.app.hub)
        return await super().check_routes(user_dict, service_dict, routes=None)

    def _dynamic_config_for_route(self, routespec, target, data):
        traefik_config, jupyterhub_config = super()._dynamic_config_for_route(routespec, target, data)
        if data and data.get("hub"):
            # both defined by the installer in barehub.toml: retry while the hub restarts, instead of a 502
            for router in traefik_config["http"]["routers"].values():
                router["middlewares"] = [f"{HUB_RETRY}@file"]
            for service in traefik_config["http"]["services"].values():
                service["loadBalancer"]["serversTransport"] = f"{HUB_TRANSPORT}@file"
        return traefik_config, jupyterhub_config

    @default("dynamic_config_handler")
    def _default_handler(self):
        return GroupReadableRulesFile(self.dynamic_config_file)

    @observe("dynamic_config_file")
    def _set_dynamic_config_file(self, change):
        self.dynamic_config_handler = GroupReadableRulesFile(self.dynamic_config_file)
