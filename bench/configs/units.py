# barehub's own spawner for the restart and reload rows: each server its own systemd unit, outside the hub's
# cgroup, as barehub ships it (the spawn rows use SimpleLocalProcessSpawner in every setup, so that they
# compare hub and proxy only). Loaded after common.py; its user, "steady", is a system account (bench.py).
c = get_config()  # noqa: F821
c.JupyterHub.spawner_class = "barehub.local_spawner.LocalSpawner"
