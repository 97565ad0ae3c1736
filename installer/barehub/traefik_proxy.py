"""The hub's proxy backend: jupyterhub-traefik-proxy's file provider, adapted to an external traefik.

What differs from upstream (pinned 2.1.0; the overridden methods are its private ones):
- rules are written 0640 into the setgid rules directory: upstream's NamedTemporaryFile makes them
  0600, which the unprivileged traefik user could not read;
- the hub's own route gets a retry and a no-keep-alive transport, and is rewritten at every hub
  start, so that hub restarts go unnoticed (see proxy_config.HUB_RETRY and barehub.hub);
- a new route is polled for from 10 ms instead of 200 ms (every spawn waits for it).
"""
from __future__ import annotations

import os
import tempfile

from jupyterhub.utils import exponential_backoff
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

    async def _wait_for_route(self, routespec):
        """As upstream, but polling traefik from 10 ms instead of 200 ms: with throttle 0 traefik applies
        a rules change within milliseconds, and every spawn waits here."""

        async def ready() -> bool:
            return (await self._check_for_traefik_service(routespec, "service")
                    and await self._check_for_traefik_service(routespec, "router"))

        await exponential_backoff(ready, f"Traefik route for {routespec}: not ready", start_wait=0.01,
                                  scale_factor=1.5, max_wait=0.5, timeout=self.check_route_timeout)

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
