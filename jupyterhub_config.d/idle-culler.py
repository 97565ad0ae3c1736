# Idle culler tuning. barehub runs jupyterhub-idle-culler as a hub-managed service by default,
# stopping servers idle for 1 hour. Copy to $PREFIX/jupyterhub_config.d/60-idle-culler.py, edit:
#   systemctl reload jupyterhub
#
# A fragment that assigns c.JupyterHub.services or load_roles (as JupyterHub's docs show) keeps the
# culler and barehub's own service: barehub adds them back after the fragments, unless a fragment
# has an entry of the same name. So the culler goes only with the explicit switch below.

c.Barehub.idle_timeout = 2 * 3600  # seconds of inactivity before a server is stopped
# c.Barehub.idle_culler = False  # no culler at all

# More than the timeout (how often it checks, max age, culling users): your own entry of the same
# name replaces barehub's; deleting users needs one more permission, in the role below.
# from barehub.hub_config import IDLE_CULLER, idle_culler_service
# c.JupyterHub.services.append(idle_culler_service(
#     2 * 3600,
#     "--cull-every=300",  # seconds between checks
#     "--max-age=86400",  # also stop servers older than this (seconds), even if active
#     "--cull-users",  # also delete the (non-admin) users whose servers were culled
# ))
# c.JupyterHub.load_roles.append({
#     "name": IDLE_CULLER,
#     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:users"],
#     "services": [IDLE_CULLER],
# })
