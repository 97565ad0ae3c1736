"""The check of the fragments on disk that every hub (re)start waits for, and the record of its refusal.

`check_fragments` runs barehub.validation against the install and raises `FragmentProblems`, whose fields
(each problem's file, line and message) let each caller say in its own words what it did not do: a reload
leaves the running hub alone, an install does not (re)start it, an upgrade does not begin.

A refusal is kept in records/fragment-check.json (root's, 0600: a message may quote a value a fragment
holds, and fragments may carry secrets) until a check of the same install passes. `barehub status` reads
it instead of running the check itself: the check executes every fragment (anything a site put there,
LDAP or OIDC look-ups included) and takes seconds, while status must stay fast and run no site code. The
record names the fragment set it refused (a digest), so status can tell whether the files on disk are still
that set, or were changed since and are unchecked.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from barehub import units
from barehub.config_loading import fragments_digest, read_set
from barehub.fsutil import FileSpec, atomic_write
from barehub.base.paths import Paths
from barehub.base.errors import BarehubError
from barehub.base.records import read_json_dict
from barehub.systemd import Systemctl
from barehub.validation import Problem, validate

RECORD_MODE = 0o600
RECHECK = "barehub check"


class FragmentProblems(BarehubError):
    """The fragments failed the check. `problems` holds each one's file, line and message; `refusal` words
    the message for what the caller did not do because of them."""

    def __init__(self, problems: Sequence[Problem], config_d: Path):
        self.problems = tuple(problems)
        self.config_d = config_d
        super().__init__(self.refusal(""), f"fix the file(s) in {config_d}, then run: {RECHECK}")

    @property
    def listing(self) -> str:
        """One line per problem, each naming its file and line."""
        return "\n  ".join(str(p) for p in self.problems)

    def refusal(self, consequence: str) -> str:
        """"the hub config has problems; <consequence>:" and the problems below it."""
        return f"the hub config has problems{'; ' + consequence if consequence else ''}:\n  {self.listing}"


def check_fragments(paths: Paths, systemctl: Systemctl) -> int:
    """Raises FragmentProblems with every problem found; returns the number of fragments checked.

    Records nothing: an upgrade's check is the new release's verdict, not one about the running hub's config."""
    fragments, problems = validate(paths, hub_pids=(systemctl.main_pid(units.HUB_UNIT),))
    if problems:
        raise FragmentProblems(problems, paths.config_d)
    return len(fragments)


def check_and_record(paths: Paths, systemctl: Systemctl) -> int:
    """`check_fragments`, keeping its refusal for `barehub status` until a check passes (then clearing it).

    Only root keeps the record (records/ is root's, and not there before the installer makes it): another
    user's `barehub check` checks, says what it found, and records nothing."""
    keeps = os.geteuid() == 0 and paths.records.is_dir()
    digest = fragments_digest(read_set(paths.config_d)) if keeps else ""  # the set checked (the check reads it too)
    try:
        count = check_fragments(paths, systemctl)
    except FragmentProblems as e:
        if keeps:
            record_refusal(paths, digest, e.problems)
        raise
    if keeps:
        paths.fragment_check_file.unlink(missing_ok=True)
    return count


def problem_fields(problem: Problem) -> dict:
    """A problem as the record and `barehub status --json` keep it: its file, line and message."""
    return {"file": str(problem.file) if problem.file else None, "line": problem.line, "message": problem.message}


def record_refusal(paths: Paths, digest: str, problems: Sequence[Problem]) -> None:
    record = {"digest": digest, "checked": time.time(),
              "problems": [problem_fields(p) for p in problems]}
    atomic_write(paths.fragment_check_file, FileSpec(json.dumps(record, indent=2) + "\n", RECORD_MODE))


@dataclass(frozen=True)
class Refusal:
    """The last check that refused the fragments: when, what it found, and whether the files on disk are
    still the set it refused (`current`) or were changed since."""

    checked: float
    problems: tuple[Problem, ...]
    current: bool


def read_refusal(paths: Paths) -> Optional[Refusal]:
    """The recorded refusal, or None when the last check passed (or none refused, or the record is unreadable)."""
    record = read_json_dict(paths.fragment_check_file)
    try:
        problems = tuple(Problem(Path(p["file"]) if p.get("file") else None,
                                 int(p["line"]) if p.get("line") else None, str(p.get("message", "")))
                         for p in record["problems"])
        checked = float(record["checked"])
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if not problems:
        return None
    current = record.get("digest") == fragments_digest(read_set(paths.config_d))
    return Refusal(checked, problems, current)
