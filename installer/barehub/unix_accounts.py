"""Which unix account a login may run a server as: a person's, never a system or service account.

A login name becomes the unix account the server runs as (SystemdSpawner: `systemd-run --uid=NAME`;
batchspawner: `sudo -u NAME sbatch`; LocalProcessSpawner: setuid NAME). Whoever can choose her login name
at the identity provider (a GitHub login renamed to `barehub-proxy`, a self-registered OIDC
`preferred_username`, an LDAP entry named `daemon`) would otherwise get a server running as that account:
reproduced, a server ran as the `--hub-user` account and read the hub's database and secrets. So before a
spawner starts anything, the account must exist, lie in the site's range of people's uids (UID_MIN..UID_MAX
of /etc/login.defs, unless the site sets c.Barehub.uid_min/uid_max, as sites with directory uids beyond
60000 do), and be neither root nor one of barehub's own service users.

The check is part of JupyterHub's Spawner.run_pre_spawn_hook itself (install_guard), which JupyterHub calls
for every spawn of every server, named or not, started by the user or an admin, just before Spawner.start: no
fragment, spawner subclass or trait default that sets its own pre_spawn_hook leaves it out (the site's hook
still runs, after it). Fail closed: every spawner is taken to run servers as unix users except those known
not to (pods, containers that do not run as the host account, SystemdSpawner's dynamic users); a site with
another remote spawner says so with c.Barehub.servers_run_as_unix_users = False.
"""
from __future__ import annotations

import logging
import pwd
from dataclasses import dataclass
from pathlib import Path

from tornado import web

from barehub.fsutil import uid_of

log = logging.getLogger("barehub")

LOGIN_DEFS = Path("/etc/login.defs")
DEFAULT_UID_RANGE = (1000, 60000)  # login.defs' own defaults (shadow-utils), used where it says nothing
# spawners whose servers do not run as the login's unix account on this host (module.Class, any base) ...
REMOTE_SPAWNERS = {"kubespawner.spawner.KubeSpawner", "dockerspawner.dockerspawner.DockerSpawner",
                   "dockerspawner.swarmspawner.SwarmSpawner"}
# ... except these, which run the container as the login's host uid, with its home
HOST_ACCOUNT_SPAWNERS = {"dockerspawner.systemuserspawner.SystemUserSpawner"}
# never a person, whatever range a site sets: the overflow ids (nobody, 16- and 32-bit -1/-2), and the uids
# systemd hands to DynamicUser= services
NEVER_A_PERSON = {65534, 65535, 4294967294, 4294967295}
SYSTEMD_DYNAMIC_UIDS = range(61184, 65520)


class SystemAccountRefused(web.HTTPError):
    """Shown on the user's spawn page as the reason the server did not start: JupyterHub passes an HTTPError's
    message to the page (any other exception is "Unhandled error starting server NAME"), and the progress
    events say it too."""

    def __init__(self, message: str):
        super().__init__(403, message)
        self.jupyterhub_message = message


@dataclass(frozen=True)
class AccountPolicy:
    uid_min: int
    uid_max: int
    service_users: frozenset[str]  # barehub's own: root, the hub user, traefik's user
    where: str  # where the range comes from, for the admin's log line

    def refusal(self, name: str) -> str | None:
        """Why `name` may not run a server (for the admin: the account, its uid, the setting), or None."""
        try:
            account = pwd.getpwnam(name)
        except KeyError:
            return f"there is no unix account {name!r} on this host"
        except (TypeError, ValueError):  # a NUL byte or a non-str name
            return f"{name!r} is not a unix account name"
        service = {n for n in self.service_users if n == name or uid_of(n) == account.pw_uid}
        if account.pw_uid == 0 or service:
            return f"{name!r} (uid {account.pw_uid}) is {'root' if account.pw_uid == 0 else 'a barehub service user'}"
        if account.pw_uid in NEVER_A_PERSON or name == "nobody":
            return f"{name!r} (uid {account.pw_uid}) is the overflow account nobody"
        if account.pw_uid in SYSTEMD_DYNAMIC_UIDS:
            return f"{name!r} has uid {account.pw_uid}, in the range systemd gives to dynamic service users"
        if not self.uid_min <= account.pw_uid <= self.uid_max:
            return (f"{name!r} has uid {account.pw_uid}, outside the range of people's accounts "
                    f"{self.uid_min}-{self.uid_max} ({self.where})")
        return None


def login_defs_range(path: Path = LOGIN_DEFS) -> tuple[int, int]:
    """UID_MIN and UID_MAX as the system's useradd uses them (its defaults where the file says nothing)."""
    values = dict(zip(("UID_MIN", "UID_MAX"), DEFAULT_UID_RANGE))
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] in values and words[1].isdigit():
            values[words[0]] = int(words[1])
    return values["UID_MIN"], values["UID_MAX"]


def policy(service_users: set[str], uid_min: int | None = None, uid_max: int | None = None) -> AccountPolicy:
    low, high = login_defs_range()
    where = f"UID_MIN..UID_MAX of {LOGIN_DEFS}"
    if uid_min is not None or uid_max is not None:
        where = "c.Barehub.uid_min/uid_max"
    return AccountPolicy(low if uid_min is None else uid_min, high if uid_max is None else uid_max,
                         frozenset({"root", *service_users}), where)


def runs_as_unix_user(spawner) -> bool:
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in type(spawner).__mro__}
    if getattr(spawner, "dynamic_users", False) is True:  # SystemdSpawner: a fresh uid, never an existing account
        return False
    return bool(names & HOST_ACCOUNT_SPAWNERS) or not names & REMOTE_SPAWNERS


def unix_name(spawner) -> str:
    """The account the spawner will start the server as: SystemdSpawner maps the login through its
    username_template ("{USERNAME}" by default); the others use the login name."""
    template = getattr(spawner, "username_template", None)
    expand = getattr(spawner, "_expand_user_vars", None)
    if isinstance(template, str) and callable(expand):
        return expand(template)
    return spawner.user.name


GUARD: dict = {"policy": None, "unix_users": None}  # what the loaded config says (install_guard)


def refuse_system_account(spawner) -> None:
    """Raise SystemAccountRefused (the spawn page shows it) when `spawner` would run as a system account."""
    account_policy, unix_users = GUARD["policy"], GUARD["unix_users"]
    if account_policy is None or unix_users is False or (unix_users is None and not runs_as_unix_user(spawner)):
        return
    name = unix_name(spawner)
    reason = account_policy.refusal(name)
    if reason:
        log.warning("refused a server for the login %r: %s; no server runs as a system or service account",
                    spawner.user.name, reason)
        raise SystemAccountRefused(
            f"No server is started for {spawner.user.name!r}: it is not a person's account on this system "
            f"({reason}). Ask the hub's administrators.")


def install_guard(account_policy: AccountPolicy, unix_users: bool | None) -> None:
    """Make JupyterHub's Spawner.run_pre_spawn_hook refuse system accounts before it runs the site's hook
    (once per process; the policy is the last loaded config's)."""
    from jupyterhub.spawner import Spawner

    GUARD.update(policy=account_policy, unix_users=unix_users)
    original = Spawner.run_pre_spawn_hook
    if getattr(original, "barehub_guard", None) is GUARD:
        return

    def run_pre_spawn_hook(self):
        refuse_system_account(self)
        return original(self)

    run_pre_spawn_hook.barehub_guard = GUARD
    Spawner.run_pre_spawn_hook = run_pre_spawn_hook
