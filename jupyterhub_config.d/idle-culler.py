# Idle culler tuning. barehub runs jupyterhub-idle-culler as a hub-managed service by default,
# stopping servers idle for 1 hour. Copy to $PREFIX/jupyterhub_config.d/60-idle-culler.py, edit:
#   barehub check && systemctl reload jupyterhub
#
# What counts as activity: what JupyterHub counts (the user's requests, kernel messages), and also a busy
# kernel (a cell computing without output: a training loop, a solver, time.sleep) and a server using CPU
# (a build in a terminal, VS Code), as each server reports them to the hub every few seconds. So work is
# never taken for idleness, with or without a browser open. The culler logs why it stops each server
# (journalctl -u jupyterhub | grep 'barehub culler'): idle for X, busy beyond the cap, past the maximum age.
#
# A fragment that assigns c.JupyterHub.services or load_roles (as JupyterHub's docs show) keeps the
# culler and barehub's own service: barehub adds them back after the fragments, unless a fragment
# has an entry of the same name. So the culler goes only with the explicit switch below.

c.Barehub.idle_timeout = 2 * 3600  # seconds of inactivity before a server is stopped (0: never for idleness)
# c.Barehub.max_busy = 24 * 3600  # seconds a server may stay busy without a break (a runaway loop); 0: no cap
# c.Barehub.max_age = 7 * 86400  # seconds after its start at which a server is stopped whatever it does; 0: none
# c.Barehub.keep_max = 24 * 3600  # users may keep a server running until a time at most this far ahead
#                                 # (the sessions page, or PATCH /hub/api/users/NAME/sessions/SERVER); 0: no
# c.Barehub.cpu_active_percent = 10.0  # CPU use (percent of one CPU) at which a server counts as active
#
# Per spawn profile (the label users choose on the spawn page, see slurm.py's PROFILES): a GPU profile can be
# culled sooner than a CPU one, and its busy time capped.
# c.Barehub.profile_limits = {
#     "1 GPU: 8 CPUs, 32 GB, 4 hours": {"idle_timeout": 30 * 60, "max_busy": 3 * 3600},
# }
# c.Barehub.idle_culler = False  # no culler at all

# More than the limits (culling users): your own entry of the same name replaces barehub's; it keeps barehub's
# limits above. Deleting users needs one more permission, in the role below.
# from barehub.hub_config import IDLE_CULLER, idle_culler_service
# c.JupyterHub.services.append(idle_culler_service(
#     2 * 3600,
#     "--cull-every=300",  # seconds between checks
#     "--cull-users",  # also delete the (non-admin) users whose servers were culled
# ))
# c.JupyterHub.load_roles.append({
#     "name": IDLE_CULLER,
#     "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers", "admin:server_state",
#                "admin:users"],
#     "services": [IDLE_CULLER],
# })
