"""Which unix account a login may run a server as: a person's, never a system or service account.

A login name becomes the unix account the server runs as (SystemdSpawner: `systemd-run --uid=NAME`;
batchspawner: `sudo -u NAME sbatch`; LocalProcessSpawner: setuid NAME). Whoever can choose her login name
at the identity provider (a GitHub login renamed to `barehub-proxy`, a self-registered OIDC
`preferred_username`, an LDAP entry named `daemon`) would otherwise get a server running as that account:
reproduced, a server ran as the `--hub-user` account and read the hub's database and secrets. So before a
spawner starts anything, the account must exist, lie in the site's range of people's uids (UID_MIN..UID_MAX
of /etc/login.defs, unless the site sets c.Barehub.uid_min/uid_max, as sites with directory uids beyond
60000 do), and be neither root nor one of barehub's own service users.

Fail closed: every spawner is taken to run servers as unix users except those known not to (pods,
containers); a site with another remote spawner says so with c.Barehub.servers_run_as_unix_users = False.
"""
from __future__ import annotations

import logging
import pwd
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("barehub")

LOGIN_DEFS = Path("/etc/login.defs")
DEFAULT_UID_RANGE = (1000, 60000)  # login.defs' own defaults (shadow-utils), used where it says nothing
# spawners whose servers do not run as the login's unix account on this host (module.Class, any base)
REMOTE_SPAWNERS = {"kubespawner.spawner.KubeSpawner", "dockerspawner.dockerspawner.DockerSpawner",
                   "dockerspawner.swarmspawner.SwarmSpawner"}


class SystemAccountRefused(RuntimeError):
    """Shown on the user's spawn page as the reason the server did not start."""


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
        if not self.uid_min <= account.pw_uid <= self.uid_max:
            return (f"{name!r} has uid {account.pw_uid}, outside the range of people's accounts "
                    f"{self.uid_min}-{self.uid_max} ({self.where})")
        return None


def uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
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
    return not any(f"{cls.__module__}.{cls.__qualname__}" in REMOTE_SPAWNERS for cls in type(spawner).__mro__)


def unix_name(spawner) -> str:
    """The account the spawner will start the server as: SystemdSpawner maps the login through its
    username_template ("{USERNAME}" by default); the others use the login name."""
    template = getattr(spawner, "username_template", None)
    expand = getattr(spawner, "_expand_user_vars", None)
    if isinstance(template, str) and callable(expand):
        return expand(template)
    return spawner.user.name


def guarded(hook, account_policy: AccountPolicy, unix_users: bool | None):
    """A pre_spawn_hook that refuses a system account first, then runs the site's own `hook` (if any)."""

    def refuse_system_accounts(spawner):
        if unix_users is False or (unix_users is None and not runs_as_unix_user(spawner)):
            return hook(spawner) if hook else None
        name = unix_name(spawner)
        reason = account_policy.refusal(name)
        if reason:
            log.warning("refused a server for the login %r: %s; no server runs as a system or service account",
                        spawner.user.name, reason)
            raise SystemAccountRefused(
                f"No server is started for {spawner.user.name!r}: it is not a person's account on this system "
                f"({reason}). Ask the hub's administrators.")
        return hook(spawner) if hook else None

    refuse_system_accounts.barehub_guard = True  # applied once, even when the config is applied twice
    return refuse_system_accounts
