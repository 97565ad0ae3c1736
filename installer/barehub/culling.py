"""The culler's decision for one server: stop it or keep it, and why, in one pure function (`decide`).

Why. jupyterhub-idle-culler stops a server whose last activity is older than one timeout. A kernel that computes
without printing (a training loop, a solver, `time.sleep`) sends nothing, so the hub's last_activity stays at the
moment the cell started and hours of work are culled (JupyterHub #1498; seen here too: without
barehub.server_activity, test_culling.py's sleeping cell was culled at its 30 s timeout). barehub keeps the real
culler and gives it more to go on:
- each server says when it is working (barehub.server_activity: a busy kernel, or CPU used by the server's own
  cgroup or process tree) and the hub moves its last_activity on each such report (barehub.sessions' work API),
  so a busy server is not idle;
- the spawner keeps what the culler needs in its state (barehub.server_work: busy since when, kept until when),
  which the culler reads in the one paged user list it already asks for (its role has admin:server_state);
- this function, installed as the culler's `cull_arbiter_hook` (barehub/idle_culler_config.py), applies the
  site's limits per profile and says why for every server, in the hub's journal.
The order: past the maximum age -> stop (the admin's absolute bound); busy beyond the cap -> stop (a runaway loop
does not hold a GPU for ever, kept or not); kept until a time the user chose within the site's maximum -> keep
(a keep is for idle time: a meeting, a long read); idle past the timeout -> stop; otherwise keep. The cap counts
from the start of a spell as the hub recorded it (barehub.server_work), which later reports cannot push back; a
user who stops her loop and starts it again begins a new spell, so max_age is the one bound nothing resets.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta

from traitlets import TraitError, TraitType

from barehub.utc_time import epoch, iso as utc, moment_of

POLICY_ENV = "BAREHUB_CULL_POLICY"  # the site's limits, as JSON, in the culler's environment
LIMIT_KEYS = ("idle_timeout", "max_busy", "max_age")
STALE_REPORTS = 3  # a busy report older than this many report intervals is not believed (the server went quiet)
MIN_CULL_EVERY, MAX_CULL_EVERY = 5, 300
MIN_REPORT_EVERY, MAX_REPORT_EVERY = 5, 300

log = logging.getLogger("IdleCuller")  # the culler's own logger: its lines and these share one format


def profile_in(user_options) -> str | None:
    """The spawn profile's label in a server's user_options (the drop-ins write the one used), if any."""
    profile = user_options.get("profile") if isinstance(user_options, dict) else None
    return profile if isinstance(profile, str) else None


@dataclass(frozen=True)
class Limits:
    """Seconds; 0 is no limit (idle_timeout 0: never culled for idleness)."""
    idle_timeout: int
    max_busy: int = 0
    max_age: int = 0


@dataclass(frozen=True)
class Policy:
    default: Limits
    profiles: dict[str, Limits] = field(default_factory=dict)
    keep_max: int = 24 * 3600
    cpu_active_percent: float = 10.0

    def limits_for(self, profile: str | None) -> Limits:
        return self.profiles.get(profile or "", self.default)

    def cull_every(self) -> int:
        """How often the culler looks: half the shortest limit, within [5 s, 5 min] (idle-culler's default is half
        its one timeout)."""
        shortest = min((v for lim in (self.default, *self.profiles.values()) for v in (
            lim.idle_timeout, lim.max_busy, lim.max_age) if v), default=2 * MAX_CULL_EVERY)
        return max(MIN_CULL_EVERY, min(MAX_CULL_EVERY, shortest // 2))

    def report_every(self, profile: str | None) -> int:
        """How often a working server reports: four times per idle timeout, so one lost report never culls it."""
        timeout = self.limits_for(profile).idle_timeout or 4 * MAX_REPORT_EVERY
        return max(MIN_REPORT_EVERY, min(MAX_REPORT_EVERY, timeout // 4))

    def stale_after(self, profile: str | None) -> int:
        """Seconds after which a busy report is not believed: the server went quiet (STALE_REPORTS reports missed)."""
        return STALE_REPORTS * self.report_every(profile)

    def to_json(self) -> dict:
        return {"default": vars(self.default), "profiles": {k: vars(v) for k, v in self.profiles.items()},
                "keep_max": self.keep_max, "cpu_active_percent": self.cpu_active_percent}

    @classmethod
    def from_json(cls, data: dict) -> "Policy":
        return cls(Limits(**data["default"]), {k: Limits(**v) for k, v in data.get("profiles", {}).items()},
                   data.get("keep_max", 24 * 3600), data.get("cpu_active_percent", 10.0))


class ProfileLimits(TraitType):
    """c.Barehub.profile_limits: {profile label: {"idle_timeout"|"max_busy"|"max_age": seconds}}; a wrong key or
    value is refused naming it (barehub check shows the fragment's line)."""
    default_value: dict = {}
    info_text = 'a dict {profile label: {"idle_timeout": s, "max_busy": s, "max_age": s}}'

    def validate(self, obj, value):
        if not isinstance(value, dict):
            self.error(obj, value)
        for label, limits in value.items():
            where = f"c.Barehub.profile_limits[{label!r}]"
            if not isinstance(label, str) or not isinstance(limits, dict):
                raise TraitError(f"{where} must be a dict of limits for a profile label, not {limits!r}")
            for key, seconds in limits.items():
                if key not in LIMIT_KEYS:
                    raise TraitError(f"{where}[{key!r}] is not a limit; the limits are {', '.join(LIMIT_KEYS)}")
                if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                    raise TraitError(f"{where}[{key!r}] must be a whole number of seconds >= 0, not {seconds!r}")
        return value


def policy_from_config(section, idle_timeout: int) -> Policy:
    """The Policy from a validated Barehub configurable (barehub.hub_config.Barehub)."""
    default = Limits(idle_timeout, section.max_busy, section.max_age)
    profiles = {label: replace(default, **limits) for label, limits in section.profile_limits.items()}
    return Policy(default, profiles, section.keep_max, section.cpu_active_percent)


# ------------------------------------------------------------------------------------------ the decision

@dataclass(frozen=True)
class Decision:
    cull: bool
    reason: str


def duration(seconds: float) -> str:
    return str(timedelta(seconds=round(max(0.0, seconds))))


def decide(server: dict, policy: Policy, now: float, idle_timeout: int | None = None) -> Decision:
    """Stop or keep this server (JupyterHub's server model, with the spawner's state), and why.

    `idle_timeout`: the culler's own --timeout, for servers of no profile with limits of its own."""
    profile = profile_in(server.get("user_options"))
    limits = policy.limits_for(profile)
    if idle_timeout is not None and limits is policy.default:
        limits = replace(limits, idle_timeout=idle_timeout)
    of_profile = f" (profile {profile!r})" if profile in policy.profiles else ""
    state = server.get("state") if isinstance(server.get("state"), dict) else {}
    work = state.get("work") if isinstance(state.get("work"), dict) else {}

    started = epoch(server.get("started"))
    age = now - started if started is not None else None
    if limits.max_age and age is not None and age >= limits.max_age:
        return Decision(True, f"running for {duration(age)}, past the maximum age of {duration(limits.max_age)}"
                              f"{of_profile}")

    busy_since, reported = moment_of(work.get("busy_since")), moment_of(work.get("reported_at"))
    busy = work.get("busy") if work.get("busy") in ("kernel", "cpu") else None
    working = busy is not None and busy_since is not None and reported is not None and \
        now - reported <= policy.stale_after(profile)
    if working and limits.max_busy and now - busy_since >= limits.max_busy:
        return Decision(True, f"busy ({busy}) for {duration(now - busy_since)}, beyond the cap of "
                              f"{duration(limits.max_busy)}{of_profile}")

    keep_until = moment_of(state.get("keep_until"))
    if keep_until is not None and keep_until > now:
        return Decision(False, f"kept until {utc(keep_until)} at the user's request")

    last = epoch(server.get("last_activity")) or started
    idle = now - last if last is not None else None
    expired = f"; its keep-until {utc(keep_until)} has passed" if keep_until is not None else ""
    if limits.idle_timeout and idle is not None and idle >= limits.idle_timeout:
        return Decision(True, f"idle for {duration(idle)}, past the timeout of {duration(limits.idle_timeout)}"
                              f"{of_profile}{expired}")
    if working:
        return Decision(False, f"busy ({busy}) since {utc(busy_since)}")
    return Decision(False, f"idle for {duration(idle or 0)} of {duration(limits.idle_timeout)}{of_profile}"
                    if limits.idle_timeout else "no idle timeout")


class Arbiter:
    """jupyterhub-idle-culler's cull_arbiter_hook: decides with `decide` and logs why.

    Every stop is logged; a kept server is logged when the reason it is kept changes in kind (kept until T,
    busy, idle), at debug level otherwise, so a week of a kept server is a handful of lines, not thousands.
    A server whose record cannot be decided on is kept and said once: the culler goes on with the others."""

    REMEMBERED = 10_000  # servers whose last reason is kept (a hub with more starts forgetting the oldest)

    def __init__(self, policy: Policy, clock=time.time):
        self.policy = policy
        self.clock = clock
        self.last_kind: dict[str, str] = {}

    def __call__(self, *, inactive, inactive_limit, server, **_) -> bool:
        name = server.get("full_name") or server.get("name") or "?"
        try:
            decision = decide(server, self.policy, self.clock(), inactive_limit)
        except Exception as e:  # noqa: BLE001 (one odd record must not stop the culling of everyone)
            decision = Decision(False, f"undecidable ({type(e).__name__}: {e}), kept")
        kind = decision.reason.split(" ", 1)[0]
        previous = self.last_kind.pop(name, None)  # re-inserted last: the dict's order is the order last seen
        if decision.cull:
            log.info("barehub culler: stopping %s: %s", name, decision.reason)
            return True
        level = logging.INFO if previous != kind and kind != "idle" else logging.DEBUG
        log.log(level, "barehub culler: keeping %s: %s", name, decision.reason)
        self.last_kind[name] = kind
        while len(self.last_kind) > self.REMEMBERED:
            del self.last_kind[next(iter(self.last_kind))]
        return False
