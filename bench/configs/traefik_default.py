# (b) the same hub with jupyterhub-traefik-proxy starting traefik itself, at traefik's default
#     provider throttle (2 s; jupyterhub-traefik-proxy 2.1 would otherwise set 0 s).
c = get_config()  # noqa: F821
c.JupyterHub.proxy_class = "traefik_file"
c.JupyterHub.bind_url = "http://:28280"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:28282"
c.TraefikProxy.traefik_api_url = "http://127.0.0.1:28281"
c.TraefikProxy.traefik_api_username = "bench"
c.TraefikProxy.traefik_api_password = open("/etc/bench/token").read().strip()
c.TraefikProxy.traefik_providers_throttle_duration = "2s"
c.TraefikFileProviderProxy.dynamic_config_file = "/var/lib/bench-traefik/rules.toml"
c.TraefikProxy.static_config_file = "/var/lib/bench-traefik/traefik.toml"
c.JupyterHub.db_url = "sqlite:////var/lib/bench-traefik/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/var/lib/bench-traefik/cookie_secret"
c.JupyterHub.cleanup_servers = False
load_subconfig("/mnt/bench/configs/common.py")  # noqa: F821
