# Idle culler tuning. barehub runs jupyterhub-idle-culler as a hub-managed service by default,
# stopping servers idle for 1 hour. Copy this file to $PREFIX/jupyterhub_config.d/, edit, then:
#   systemctl reload jupyterhub
from barehub.hub_config import IDLE_CULLER, idle_culler_service

c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != IDLE_CULLER] + [
    idle_culler_service(
        2 * 3600,  # seconds of inactivity before a server is stopped
        "--cull-every=300",  # how often to check, in seconds
        # "--max-age=86400",  # also stop servers older than this, even if active
        # "--cull-users",  # also delete the (non-admin) users whose servers were culled
    )
]

# To switch the culler off instead:
# c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != IDLE_CULLER]
