# Shared by the three setups: the tiny server, an API-only benchmark service, no user switching.
import sys

BENCH_TOKEN = open("/etc/bench/token").read().strip()
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "simple"  # SimpleLocalProcessSpawner: servers run as the hub's user
c.Spawner.cmd = [sys.executable, "/mnt/bench/tinyserver.py"]
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
c.JupyterHub.authenticator_class = "dummy"  # users are made through the API: no system accounts needed
c.Barehub.servers_run_as_unix_users = False  # (the simple spawner runs every server as the hub's own user)
c.Authenticator.allow_all = True
c.JupyterHub.concurrent_spawn_limit = 0


# Each server its own port. JupyterHub's random_port (bind to port 0, close, hand the number over) gave two of
# 100 concurrent spawns the same port in one run: one user then waited on the other's server until the spawn
# timed out. The same for every setup; 30000-38999 is clear of the bench's other ports.
def unique_port(spawner, ports=__import__("itertools").cycle(range(30000, 39000))):
    spawner.port = next(ports)


c.Spawner.pre_spawn_hook = unique_port
services = c.JupyterHub.services if "services" in c.JupyterHub else []  # barehub's base config sets some
roles = c.JupyterHub.load_roles if "load_roles" in c.JupyterHub else []
c.JupyterHub.services = [s for s in services if s["name"] != "bench"] + [
    {"name": "bench", "api_token": BENCH_TOKEN}]
c.JupyterHub.load_roles = [r for r in roles if r["name"] != "bench"] + [
    {"name": "bench", "scopes": ["admin:users", "admin:servers", "read:users", "list:users"], "services": ["bench"]}]
