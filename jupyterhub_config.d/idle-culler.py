# Idle culler tuning. barehub runs jupyterhub-idle-culler as a hub-managed service by default,
# stopping servers idle for 1 hour. Copy to $PREFIX/jupyterhub_config.d/60-idle-culler.py, edit:
#   systemctl reload jupyterhub
from barehub.hub_config import IDLE_CULLER, idle_culler_service

TIMEOUT = 2 * 3600  # seconds of inactivity before a server is stopped
CULL_EVERY = 300  # seconds between checks

c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != IDLE_CULLER] + [
    idle_culler_service(
        TIMEOUT,
        f"--cull-every={CULL_EVERY}",
        # "--max-age=86400",  # also stop servers older than this (seconds), even if active
        # "--cull-users",  # also delete the (non-admin) users whose servers were culled
    )
]
# Deleting users needs one more permission:
# c.JupyterHub.load_roles = [r for r in c.JupyterHub.load_roles if r["name"] != IDLE_CULLER] + [{
#     "name": IDLE_CULLER,
#     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:users"],
#     "services": [IDLE_CULLER],
# }]

# To switch the culler off instead:
# c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != IDLE_CULLER]
