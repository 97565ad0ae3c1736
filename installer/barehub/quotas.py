"""Monthly quotas of CPU and GPU hours, per unix group or user (c.Barehub.quotas), decided in one pure function.

What a site asks: one group must not take everything. A quota caps what a group's (or a user's) sessions used in
the calendar month (UTC), as barehub.usage counts it: CPU hours used (the cgroup's or Slurm's CPU time, not the
cores reserved) and GPU hours allocated. A spawn is refused once the month's use reached a limit it would add to
(a spawn that asks for no GPU is not refused for the GPU hours), with a message that says the quota, the use and
when it resets. A running server is never stopped by a quota: it is checked at spawn only. Admins are exempt unless
the site sets c.Barehub.quota_admins = True.

A group's quota counts the sessions charged to it: the ones whose user had it as her primary group when they ran,
as Slurm charges a job to its gid; it applies to the users whose sessions it is charged with (their primary group).
"""
from __future__ import annotations

from dataclasses import dataclass

from traitlets import TraitError, TraitType

from barehub.usage import Session, Window, summarize, this_month
from barehub.utc_time import iso

KINDS = ("group", "user")
LIMITS = ("cpu_hours", "gpu_hours")


@dataclass(frozen=True)
class Quota:
    kind: str  # "group" or "user"
    name: str
    cpu_hours: float | None = None
    gpu_hours: float | None = None

    @property
    def who(self) -> str:
        return f"{self.kind}:{self.name}"


@dataclass(frozen=True)
class Standing:
    """A quota and what was used of it this month."""
    quota: Quota
    cpu_hours: float
    gpu_hours: float
    resets_at: float

    def as_dict(self) -> dict:
        return {"quota": self.quota.who, "cpu_hours_limit": self.quota.cpu_hours,
                "gpu_hours_limit": self.quota.gpu_hours, "cpu_hours_used": self.cpu_hours,
                "gpu_hours_used": self.gpu_hours, "resets_at": iso(self.resets_at)}


def parse(value: dict) -> list[Quota]:
    """{"group:physics": {"cpu_hours": 5000, "gpu_hours": 100}, "user:ann": {"gpu_hours": 10}}; a wrong key or
    value raises ValueError naming it."""
    if not isinstance(value, dict):
        raise ValueError(f"c.Barehub.quotas must be a dict {{'group:NAME' or 'user:NAME': limits}}, not {value!r}")
    quotas = []
    for who, limits in value.items():
        where = f"c.Barehub.quotas[{who!r}]"
        kind, _, name = who.partition(":") if isinstance(who, str) else ("", "", "")
        if kind not in KINDS or not name:
            raise ValueError(f"{where}: a quota is for 'group:NAME' or 'user:NAME'")
        if not isinstance(limits, dict) or not limits:
            raise ValueError(f"{where} must be a dict of limits, e.g. {{'cpu_hours': 1000, 'gpu_hours': 50}}")
        for key, hours in limits.items():
            if key not in LIMITS:
                raise ValueError(f"{where}[{key!r}] is not a limit; the limits are {', '.join(LIMITS)} (per month)")
            if isinstance(hours, bool) or not isinstance(hours, (int, float)) or hours < 0:
                raise ValueError(f"{where}[{key!r}] must be a number of hours >= 0, not {hours!r}")
        quotas.append(Quota(kind, name, limits.get("cpu_hours"), limits.get("gpu_hours")))
    return quotas


class Quotas(TraitType):
    """c.Barehub.quotas, checked when the config is loaded (barehub check names the fragment's line)."""
    default_value: dict = {}
    info_text = "a dict {'group:NAME' or 'user:NAME': {'cpu_hours': N, 'gpu_hours': N}}"

    def validate(self, obj, value):
        try:
            parse(value)
        except ValueError as e:
            raise TraitError(str(e)) from None
        return value


def of(quotas: list[Quota], user: str, group: str) -> list[Quota]:
    """The quotas that apply to the user: her own, and her primary group's."""
    return [q for q in quotas if (q.kind, q.name) in (("user", user), ("group", group))]


def standings(quotas: list[Quota], user: str, group: str, sessions: list[Session], now: float) -> list[Standing]:
    """Each quota of the user and this month's use of it."""
    month = this_month(now)
    window = Window(month.since, now)
    out = []
    for quota in of(quotas, user, group):
        charged = [s for s in sessions if (s.user if quota.kind == "user" else s.group) == quota.name]
        total = summarize(charged, window, "user", now).total
        out.append(Standing(quota, total.cpu_hours, total.gpu_hours, month.until))
    return out


def refusal(standing: list[Standing], wants_gpus: bool) -> str | None:
    """Why a spawn is refused, or None: the first quota whose month is used up for what the spawn would use."""
    for s in standing:
        whose = f"your group {s.quota.name}" if s.quota.kind == "group" else "you"
        have = "has" if s.quota.kind == "group" else "have"
        its = "its" if s.quota.kind == "group" else "your"
        reset = f"The quota resets on {iso(s.resets_at).replace('T', ' ').replace('Z', ' UTC')}."
        if s.quota.cpu_hours is not None and s.cpu_hours >= s.quota.cpu_hours:
            return (f"Quota reached: {whose} {have} used {s.cpu_hours:.1f} of {its} {s.quota.cpu_hours:g} CPU hours "
                    f"this month. {reset} Ask your hub's admins if you need more.")
        if wants_gpus and s.quota.gpu_hours is not None and s.gpu_hours >= s.quota.gpu_hours:
            return (f"Quota reached: {whose} {have} used {s.gpu_hours:.1f} of {its} {s.quota.gpu_hours:g} GPU hours "
                    f"this month. {reset} Choose a profile without GPUs, or ask your hub's admins.")
    return None
