# Shared by the three setups: the tiny server, an API-only benchmark service, no user switching.
import sys

BENCH_TOKEN = open("/etc/bench/token").read().strip()
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner: servers run as the hub's user
c.Spawner.cmd = [sys.executable, "/mnt/bench/tinyserver.py"]
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.Authenticator.allow_all = True
c.JupyterHub.concurrent_spawn_limit = 0
c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != "bench"] + [
    {"name": "bench", "api_token": BENCH_TOKEN}]
c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != "bench"] + [
    {"name": "bench", "scopes": ["admin:users", "admin:servers", "read:users", "list:users"], "services": ["bench"]}]
