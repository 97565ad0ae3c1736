# Per-user CPU and memory limits for local servers, and a choice of them on the spawn page.
# Copy to $PREFIX/jupyterhub_config.d/30-local-limits.py, set the site values below, then:
#   barehub check && systemctl reload jupyterhub
#
# Each local server is its own systemd unit (jupyter-USER-singleuser.service in jupyterhub-users.slice),
# so a limit is the unit's MemoryMax= and CPUQuota=: a kernel that allocates past the memory limit is
# killed by the kernel's OOM killer (JupyterLab says "kernel died" and restarts it); the server and the
# other users' servers keep running. `barehub status` shows each unit's memory use and limit.
# All users' servers together: `systemctl set-property jupyterhub-users.slice MemoryMax=80%`.
# Applies to the default local spawner only (Slurm and Kubernetes have their own limits).

# --- site values -----------------------------------------------------------------------
# Spawn page choices: key -> (label, limits). Limits: mem_limit (bytes, or "512M", "4G"), cpu_limit (CPUs).
PROFILES = {
    "small": ("Small: 1 CPU, 2 GB", {"cpu_limit": 1.0, "mem_limit": "2G"}),
    "medium": ("Medium: 2 CPUs, 8 GB", {"cpu_limit": 2.0, "mem_limit": "8G"}),
    "large": ("Large: 4 CPUs, 16 GB", {"cpu_limit": 4.0, "mem_limit": "16G"}),
}
DEFAULT = "small"  # used when no choice is made (API spawns, "Start My Server" without the form)
NO_SWAP = True  # a memory limit swap cannot stretch: past it, the kernel is killed (MemorySwapMax=, cgroup v2)
# -----------------------------------------------------------------------------------------

_choices = "\n".join(f'<option value="{key}"{" selected" if key == DEFAULT else ""}>{label}</option>'
                     for key, (label, _) in PROFILES.items())
c.Spawner.options_form = f"""
<label for="profile">Resources</label>
<select class="form-control" name="profile" id="profile">{_choices}</select>
"""


def _options_from_form(formdata):
    return {"profile": formdata.get("profile", [DEFAULT])[0]}


def _apply_profile(spawner):
    """The chosen profile's limits on this spawn; an unknown profile is refused with its name."""
    key = spawner.user_options.get("profile", DEFAULT)
    if key not in PROFILES:
        raise ValueError(f"unknown profile {key!r}; choose one of {', '.join(PROFILES)}")
    # the profile used, named in the options (a spawn that chose none gets DEFAULT): the sessions page and the
    # culler's per-profile limits (c.Barehub.profile_limits) go by it
    spawner.user_options = {**spawner.user_options, "profile": key}
    if getattr(spawner, "orm_spawner", None) is not None:  # (kept for the hub's next start)
        spawner.orm_spawner.user_options = spawner.user_options
    for option, value in PROFILES[key][1].items():
        setattr(spawner, option, value)


c.Spawner.options_from_form = _options_from_form
c.Spawner.pre_spawn_hook = _apply_profile
if NO_SWAP:
    c.SystemdSpawner.unit_extra_properties = {**c.SystemdSpawner.unit_extra_properties, "MemorySwapMax": "0"}
