# (a) stock JupyterHub with configurable-http-proxy (npm), started by the hub, as its docs describe.
c = get_config()  # noqa: F821
c.JupyterHub.bind_url = "http://:28180"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:28182"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:28181"
c.ConfigurableHTTPProxy.auth_token = open("/etc/bench/token").read().strip()
c.ConfigurableHTTPProxy.command = ["/mnt/chp/node_modules/.bin/configurable-http-proxy"]
c.JupyterHub.db_url = "sqlite:////var/lib/bench-stock/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "/var/lib/bench-stock/cookie_secret"
c.JupyterHub.cleanup_servers = False
load_subconfig("/mnt/bench/configs/common.py")  # noqa: F821
