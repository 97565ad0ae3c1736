"""barehub's own calls to the hub's REST API, with barehub's service token (hub_config.BAREHUB_SERVICE), on the
hub's loopback port: `barehub status` lists every user's servers, `barehub uninstall` stops them all.

Through the hub's API, not around it: the hub knows every server of every spawner (a local unit, a Slurm job
queued or running, a pod) and stops each the way its spawner does (scancel for a job).
"""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from urllib.parse import quote

from barehub.base.paths import Paths
from barehub.secret_files import read_secret
from barehub.base.errors import BarehubError


PAGE = 200  # users per request: JupyterHub's default api_page_max_limit


class HubAPI:
    def __init__(self, paths: Paths, hub_port: int, base_url: str = "/", timeout: float = 10):
        self.url = f"http://127.0.0.1:{hub_port}{base_url}hub/api"
        self.paths = paths
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict | None = None):
        """The answer's JSON (None when it has none); BarehubError saying what failed otherwise."""
        try:
            token = read_secret(self.paths.barehub_api_token)
        except (OSError, BarehubError) as e:  # missing, or refused (a link planted where the token was)
            raise BarehubError(f"no service token: {getattr(e, 'message', e)}",
                               "run the installer again to create it") from None
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            raise BarehubError(f"the hub's API refused {method} {path}: {e.code} {e.reason}",
                               "see: journalctl -u jupyterhub -n 50") from None
        except (OSError, ValueError) as e:
            raise BarehubError(f"hub API not reachable: {e}", "is the hub running? systemctl status jupyterhub") \
                from None
        return json.loads(text) if text.strip() else None

    def active_servers(self) -> list[tuple[str, str]]:
        """(user, server name) of every server that runs or is starting or stopping ("" is the default server),
        page by page (the hub answers at most api_page_max_limit users, 200 by default, per request)."""
        servers: list[tuple[str, str]] = []
        offset = 0
        while True:
            users = self.request("GET", f"/users?state=active&offset={offset}&limit={PAGE}") or []
            servers += [(user["name"], name) for user in users for name in user.get("servers", {})]
            if len(users) < PAGE:
                return servers
            offset += len(users)

    def stop_server(self, user: str, name: str) -> None:
        path = f"/users/{quote(user, safe='')}/" + (f"servers/{quote(name, safe='')}" if name else "server")
        self.request("DELETE", path)

    def stop_all_servers(self, timeout: float = 120) -> list[str]:
        """Stop every user's server (queued Slurm jobs too); the ones still active after `timeout` s, by name."""
        for user, name in self.active_servers():
            try:
                self.stop_server(user, name)
            except BarehubError:  # e.g. a server that stopped meanwhile; what is left is listed below
                pass
        deadline = time.monotonic() + timeout
        while True:
            left = self.active_servers()
            if not left or time.monotonic() >= deadline:
                return [f"{user}/{name}" if name else user for user, name in left]
            time.sleep(1)
