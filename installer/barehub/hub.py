"""The hub process: JupyterHub, stopping so that a restart goes unnoticed (`python -m barehub.hub`).

On SIGTERM, JupyterHub 6 cleans up and cancels its tasks but leaves its HTTP server listening:
connections it accepts meanwhile are dropped, and the proxy can only answer those with a 502.
Here the hub first stops listening, so new connections are refused (traefik retries them against the
next hub, see proxy_config.HUB_RETRY), and lets requests already being served finish.
"""
from __future__ import annotations

import asyncio

from jupyterhub.app import JupyterHub

DRAIN_TIMEOUT_S = 5


class BarehubJupyterHub(JupyterHub):
    async def shutdown_cancel_tasks(self, sig=None):
        if self.http_server:
            self.http_server.stop()
            try:
                await asyncio.wait_for(self.http_server.close_all_connections(), DRAIN_TIMEOUT_S)
            except asyncio.TimeoutError:
                self.log.warning("requests still running after %d s; stopping anyway", DRAIN_TIMEOUT_S)
        await super().shutdown_cancel_tasks(sig)


main = BarehubJupyterHub.launch_instance

if __name__ == "__main__":
    main()
