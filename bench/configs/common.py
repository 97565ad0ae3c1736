# Shared by the three setups: the tiny server, an API-only benchmark service, no user switching.
import sys

BENCH_TOKEN = open("/etc/bench/token").read().strip()
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner: servers run as the hub's user
c.Spawner.cmd = [sys.executable, "/mnt/bench/tinyserver.py"]
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.authenticator_class = "dummy"  # users are made through the API: no system accounts needed
c.Authenticator.allow_all = True
c.JupyterHub.concurrent_spawn_limit = 0
services = c.JupyterHub.services if "services" in c.JupyterHub else []  # barehub's base config sets some
roles = c.JupyterHub.load_roles if "load_roles" in c.JupyterHub else []
c.JupyterHub.services = [s for s in services if s["name"] != "bench"] + [
    {"name": "bench", "api_token": BENCH_TOKEN}]
c.JupyterHub.load_roles = [r for r in roles if r["name"] != "bench"] + [
    {"name": "bench", "scopes": ["admin:users", "admin:servers", "read:users", "list:users"], "services": ["bench"]}]
