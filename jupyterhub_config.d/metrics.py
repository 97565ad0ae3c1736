# Prometheus metrics of the hub, read by Prometheus with a token that may only read metrics.
# Copy to $PREFIX/jupyterhub_config.d/70-metrics.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
# traefik's own metrics are an installer flag (they are static config):
#   python3 bootstrap.py --metrics-port 8082   # traefik's metrics on 127.0.0.1:8082/metrics
#
# What the site needs: a token file readable by the hub (root, or the --hub-user) and by Prometheus:
#   openssl rand -hex 32 > /etc/barehub/prometheus-token
#   chown root:prometheus /etc/barehub/prometheus-token && chmod 0640 /etc/barehub/prometheus-token
# and in prometheus.yml (the hub's port is 8081 unless --hub-port; add the base_url if you set one):
#   scrape_configs:
#     - job_name: jupyterhub
#       metrics_path: /hub/metrics
#       authorization: {credentials_file: /etc/barehub/prometheus-token}
#       static_configs: [{targets: ["127.0.0.1:8081"]}]
#     - job_name: traefik
#       static_configs: [{targets: ["127.0.0.1:8082"]}]
# Spawn durations are counted in buckets up to 2 days (Slurm queue waits); a hub unit drop-in with
# Environment=JUPYTERHUB_SERVER_SPAWN_DURATION_SECONDS_BUCKETS=... sets others.

# --- site values -----------------------------------------------------------------------
TOKEN_FILE = "/etc/barehub/prometheus-token"
# -----------------------------------------------------------------------------------------

with open(TOKEN_FILE) as _f:  # a missing file is reported by `barehub check` with this line
    _token = _f.read().strip()

c.JupyterHub.authenticate_prometheus = True  # the default, kept explicit: /hub/metrics needs the token
c.JupyterHub.services.append({"name": "prometheus", "api_token": _token})
c.JupyterHub.load_roles.append({"name": "prometheus", "scopes": ["read:metrics"], "services": ["prometheus"]})
