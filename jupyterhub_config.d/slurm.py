# Slurm: each user's server runs as a Slurm job (batchspawner's SlurmSpawner).
# Copy to $PREFIX/jupyterhub_config.d/40-slurm.py, set the site values below, then:
#   barehub check && systemctl reload jupyterhub
#   sudo barehub doctor slurm --user SOMEONE   # a test job as SOMEONE: each hop a server job needs, with a verdict
#
# What the site needs:
# - This host is a Slurm submit host: sbatch/squeue/scancel work here, munge runs, and every
#   hub user is a unix account here and on the compute nodes (LDAP/sssd or local).
# - sudo is installed: the hub submits jobs as the user with `sudo -E -u USER sbatch ...`.
# - The compute nodes reach the hub's public URL (HUB_URL: traefik's port, HTTPS in production)
#   and trust its certificate (Let's Encrypt, or the site CA in the nodes' system store); this
#   host reaches the nodes on PORT_RANGE (traefik proxies users' traffic straight to the node).
#   Servers talk to the hub's API through traefik, so the hub itself keeps listening on loopback
#   only: its plain-HTTP login pages are never on a cluster interface, and the only firewall
#   opening from the nodes to this host is the one users use (see docs/slurm.md).
# - The hub env ($PREFIX/conda) is on a path the compute nodes can read at the same place
#   (a shared filesystem), or an env with the same packages exists there (set SINGLEUSER).
import os
import sys
import weakref
from pathlib import Path

# --- site values -----------------------------------------------------------------------
SLURM_CONF = "/etc/slurm/slurm.conf"
HUB_URL = "https://hub.example.org"  # the hub's public URL, as the compute nodes reach it
PORT_RANGE = "40000-40999"  # ports user servers may listen on, on the compute nodes
ENV_BIN = Path(sys.executable).parent  # the hub env's bin; absolute, as sudo resets PATH
SINGLEUSER = str(ENV_BIN / "jupyterhub-singleuser")
# Spawn page choices: label -> Slurm request. Keys: partition, runtime, memory, nprocs, gres, options,
# account, qos, reservation. Users choose only among these, on the spawn page and through the REST API.
PROFILES = {
    "CPU only: 2 CPUs, 4 GB, 8 hours": {"partition": "cpu", "nprocs": "2", "memory": "4G", "runtime": "8:00:00"},
    "1 GPU: 8 CPUs, 32 GB, 4 hours": {"partition": "gpu", "nprocs": "8", "memory": "32G", "runtime": "4:00:00",
                                      "gres": "gpu:1"},
}
# -----------------------------------------------------------------------------------------

os.environ["SLURM_CONF"] = SLURM_CONF  # for the hub's own sbatch/squeue/scancel calls

# batchspawner's SlurmSpawner; barehub's says Slurm's reason on the spawn page while the job waits, and
# notices at once a job that ended before its server answered (upstream waited for start_timeout)
c.JupyterHub.spawner_class = "barehub.slurm_spawner.SlurmSpawner"
c.SlurmSpawner.hub_connect_url = HUB_URL  # servers reach the hub's API through traefik
c.Spawner.cmd = [SINGLEUSER]
c.SlurmSpawner.batchspawner_singleuser_cmd = f"{ENV_BIN}/python -m barehub.batch_singleuser"
# the range's one owner: the job takes its port from it (as BAREHUB_PORT_RANGE), the hub accepts no other port
c.SlurmSpawner.port_range = PORT_RANGE
c.SlurmSpawner.environment = {"SLURM_CONF": SLURM_CONF}
c.SlurmSpawner.req_keepvars_extra = "BAREHUB_PORT_RANGE,SLURM_CONF"
c.SlurmSpawner.start_timeout = 300  # seconds a job may wait in the queue
# users are warned this long before a job's time limit (JupyterLab and /hub/sessions show the time left)
c.SlurmSpawner.walltime_warning = 600
c.SlurmSpawner.http_timeout = 120
# the job's comment is its profile's label: Slurm's accounting keeps it (slurm.conf: AccountingStoreFlags=job_comment)
# for `barehub usage --by profile` (docs/usage.md)
c.SlurmSpawner.batch_script = """#!/bin/bash
#SBATCH --output={{homedir}}/.jupyterhub_slurm_%j.log
#SBATCH --job-name=jupyterhub-{{username}}{% if servername %}-{{servername}}{% endif %}
#SBATCH --chdir={{homedir}}
#SBATCH --export={{keepvars}}
{% if partition %}#SBATCH --partition={{partition}}
{% endif %}{% if runtime %}#SBATCH --time={{runtime}}
{% endif %}{% if memory %}#SBATCH --mem={{memory}}
{% endif %}{% if nprocs %}#SBATCH --cpus-per-task={{nprocs}}
{% endif %}{% if gres %}#SBATCH --gres={{gres}}
{% endif %}{% if options %}#SBATCH {{options}}
{% endif %}{% if profile %}#SBATCH --comment="{{profile}}"
{% endif %}
set -eu
{{cmd}}
"""

_choices = "\n".join(f'<option value="{label}">{label}</option>' for label in PROFILES)
c.SlurmSpawner.options_form = f"""
<label for="profile">Resources</label>
<select class="form-control" name="profile" id="profile">{_choices}</select>
"""


_REQUEST_KEYS = {"partition", "runtime", "memory", "nprocs", "gres", "options", "account", "qos", "reservation"}
_SITE_REQUEST = weakref.WeakKeyDictionary()  # spawner -> its req_* values as the site's config set them
for _label, _request in PROFILES.items():
    if '"' in _label or "\n" in _label:  # the label is the job's comment in the batch script (barehub usage --by profile)
        raise ValueError(f"profile {_label!r}: a label has no double quote or line break")
    if set(_request) - _REQUEST_KEYS:
        raise ValueError(f"profile {_label!r}: {sorted(set(_request) - _REQUEST_KEYS)} are not Slurm request keys; "
                         f"use {sorted(_REQUEST_KEYS)}")


def _options_from_form(formdata):
    """The spawn page sends a profile's label; _apply_profile checks it."""
    return {"profile": formdata.get("profile", [""])[0]}


def _apply_profile(spawner, user_options):
    """The chosen profile's Slurm request, for the spawn page and for the REST API alike
    (POST /hub/api/users/NAME/server with a JSON body is user_options, unchecked by the form).
    batchspawner also merges user_options into the batch script, over the profile's values: anything
    but a known profile's label would reach sbatch (partition, gres, "--account=..."), so it is refused.
    JupyterHub keeps a user's Spawner object from one spawn to the next: every request key is first set back to
    the site's value (recorded at the object's first spawn: a c.SlurmSpawner.req_account set elsewhere stays), so
    that a profile's own keys do not leak into the next (a GPU spawn's gres into a CPU spawn's request)."""
    from tornado import web

    refused = sorted(set(user_options) - {"profile"})
    label = user_options.get("profile") or next(iter(PROFILES))
    if refused or not isinstance(label, str) or label not in PROFILES:
        what = f"options {', '.join(refused)} are not accepted" if refused else f"unknown profile {label!r}"
        raise web.HTTPError(400, f"{what}: choose one of the profiles: {'; '.join(PROFILES)}")
    # the profile used, named in the options (a spawn that chose none gets the first): the sessions page and the
    # culler's per-profile limits (c.Barehub.profile_limits) go by it
    spawner.user_options = {**user_options, "profile": label}
    if spawner.orm_spawner is not None:  # (kept for the hub's next start)
        spawner.orm_spawner.user_options = spawner.user_options
    site = _SITE_REQUEST.setdefault(spawner, {key: getattr(spawner, f"req_{key}") for key in _REQUEST_KEYS})
    for key, value in {**site, **PROFILES[label]}.items():
        setattr(spawner, f"req_{key}", value)


c.SlurmSpawner.options_from_form = _options_from_form
c.SlurmSpawner.apply_user_options = _apply_profile

# --- a non-root hub (bootstrap.py --hub-user jupyterhub --hub-sudo yes) ---------------------
# --hub-sudo yes lets the hub run the setuid sudo (its sandbox then cannot filter system calls).
# The hub user may run the three Slurm commands as the users, passing on only the server's own
# variables (no SETENV: `sudo -u carol LD_PRELOAD=... squeue` and `sudo -E` are refused).
# /etc/sudoers.d/barehub-slurm (visudo -f), for users in the unix group "jupyterhub-users":
#   Cmnd_Alias BAREHUB_SLURM = /usr/bin/sbatch, /usr/bin/squeue, /usr/bin/scancel
#   Defaults!BAREHUB_SLURM !requiretty, env_keep += "JUPYTERHUB_* JPY_API_TOKEN BAREHUB_PORT_RANGE SLURM_CONF"
#   jupyterhub ALL=(%jupyterhub-users) NOPASSWD: BAREHUB_SLURM
if os.geteuid() != 0:  # the rule above keeps the variables; -E would need SETENV
    c.SlurmSpawner.exec_prefix = "sudo -u {username}"
