# Several sessions per user ("named servers"): a small CPU session for editing and a GPU job for training at
# the same time. Copy to $PREFIX/jupyterhub_config.d/20-named-servers.py, set the limit, then:
#   barehub check && systemctl reload jupyterhub
#
# Each session is its own server: a local one its own systemd unit (jupyter-USER-NAME.service, with its own
# runtime directory), a Slurm one its own job (jupyterhub-USER-NAME), so stopping one leaves the others running.
# Users start, cancel, relaunch and delete them on /hub/sessions (linked as "Sessions" in the hub's navigation
# bar), which shows each with its profile, state (queued with Slurm's reason and expected start, running, ended
# and why), node, time used and left; the same is in the REST API: GET /hub/api/users/NAME/sessions.
# The idle culler, `barehub status` and `barehub uninstall` handle every server of every user.

# --- site values -----------------------------------------------------------------------
LIMIT = 3  # named sessions a user may have (besides her default one); 0: no limit
# -----------------------------------------------------------------------------------------

c.JupyterHub.allow_named_servers = True
c.JupyterHub.named_server_limit_per_user = LIMIT
