"""The check of the fragments on disk that every hub (re)start waits for.

`check_fragments` runs barehub.validation against the install and raises `FragmentProblems`, whose fields
(each problem's file, line and message) let each caller say in its own words what it did not do: a reload
leaves the running hub alone, an install does not (re)start it, an upgrade does not begin.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from barehub import units
from barehub.paths import Paths
from barehub.shared import BarehubError
from barehub.systemd import Systemctl
from barehub.validation import Problem, validate

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
    """Raises FragmentProblems with every problem found; returns the number of fragments checked."""
    fragments, problems = validate(paths, hub_pids=(systemctl.main_pid(units.HUB_UNIT),))
    if problems:
        raise FragmentProblems(problems, paths.config_d)
    return len(fragments)
