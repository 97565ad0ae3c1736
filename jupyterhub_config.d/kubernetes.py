# Kubernetes: each user's server is a pod (kubespawner), with the hub OUTSIDE the cluster.
# Copy to $PREFIX/jupyterhub_config.d/40-kubernetes.py, set the site values, then:
#   barehub check && systemctl reload jupyterhub
#
# What the site needs (networking: check it before anything else):
# - The hub reaches the Kubernetes API with KUBECONFIG (a service account allowed to manage
#   pods, PVCs and, with services_enabled, services in NAMESPACE).
# - The pods reach the hub's public URL (HUB_URL: traefik's port, HTTPS in production) and trust
#   its certificate (Let's Encrypt's, or the site CA in the image's system store). Servers talk to
#   the hub's API through traefik, so the hub itself keeps listening on loopback only: its
#   plain-HTTP login pages are never on the pod network, and the only firewall opening from the
#   pods to this host is the one users use (as for Slurm: see docs/slurm.md).
# - This host (traefik) reaches the pods' IPs on port 8888: the pod network must be routable
#   from here (e.g. the hub host is a cluster node, or pod CIDRs are routed to it). If it is not,
#   set services_enabled = True and make the service IPs routable instead.
# Pod, PVC and route names are made from the user's name: names that could never be a safe unix
# account, URL or traefik route are refused at login, whatever the authenticator (barehub.login_names).
import os

from barehub.login_names import SAFE_USERNAME_PATTERN

# --- site values -----------------------------------------------------------------------
KUBECONFIG = "/etc/barehub/kubeconfig"
NAMESPACE = "jupyterhub"
HUB_URL = "https://hub.example.org"  # the hub's public URL, as the pods reach it (no base_url: it is added)
IMAGE = "quay.io/jupyter/scipy-notebook:2025-10-20"
# -----------------------------------------------------------------------------------------

os.environ["KUBECONFIG"] = KUBECONFIG  # read by kubespawner when it first talks to the API

c.JupyterHub.spawner_class = "kubespawner.KubeSpawner"
c.KubeSpawner.hub_connect_url = HUB_URL  # servers reach the hub's API through traefik
c.Authenticator.username_pattern = SAFE_USERNAME_PATTERN
c.KubeSpawner.namespace = NAMESPACE
c.KubeSpawner.image = IMAGE
c.KubeSpawner.cmd = ["jupyterhub-singleuser"]  # the image's own, not the hub env's
c.KubeSpawner.start_timeout = 600  # image pulls take a while
c.KubeSpawner.services_enabled = False

# Storage: one PVC per user, mounted as the home directory.
c.KubeSpawner.storage_pvc_ensure = True
c.KubeSpawner.pvc_name_template = "claim-{user_server}"
c.KubeSpawner.storage_capacity = "10Gi"
c.KubeSpawner.storage_class = "standard"
c.KubeSpawner.storage_access_modes = ["ReadWriteOnce"]
c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "claim-{user_server}"}}]
c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]

# Choices on the spawn page.
c.KubeSpawner.profile_list = [
    {"display_name": "Small: 1 CPU, 2 GB", "default": True,
     "kubespawner_override": {"cpu_limit": 1, "mem_limit": "2G"}},
    {"display_name": "Large: 4 CPUs, 16 GB",
     "kubespawner_override": {"cpu_limit": 4, "mem_limit": "16G", "cpu_guarantee": 2, "mem_guarantee": "8G"}},
]
