# Monthly quotas of CPU and GPU hours, per unix group or user, from barehub's usage accounting (systemd's for
# local servers, Slurm's accounting database for jobs; see docs/usage.md). Copy to
# $PREFIX/jupyterhub_config.d/60-quotas.py, edit, then:
#   barehub check && systemctl reload jupyterhub
#
# A quota counts the calendar month in UTC: CPU hours used (CPU time, not cores reserved) and GPU hours allocated
# (GPUs x wall time) of the sessions charged to the group (the user's primary group, as Slurm charges a job's gid)
# or to the user. A spawn is refused once the month's use has reached a limit it would add to — a spawn without a
# GPU is not refused for GPU hours — with a message that says the quota, the use and when it resets. Running
# servers are never stopped by a quota. Admins are exempt unless quota_admins is set. When the accounting cannot
# answer (slurmdbd down), spawns go ahead and the hub's journal says so.
# Users see their use and quotas at /hub/usage and GET /hub/api/users/NAME/usage; admins see everyone's there,
# at GET /hub/api/usage, and with `barehub usage`.

# --- site values ---------------------------------------------------------------------------
c.Barehub.quotas = {
    "group:physics": {"cpu_hours": 5000, "gpu_hours": 100},
    "group:students": {"cpu_hours": 500, "gpu_hours": 0},  # no GPU spawns at all
    "user:ann": {"gpu_hours": 20},  # a user's own quota, checked beside her group's
}
# c.Barehub.quota_admins = True  # admins too
