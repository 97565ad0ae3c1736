"""`barehub check`: validate the fragments without touching the running hub (reload runs it first)."""
from __future__ import annotations

import argparse
import logging

from barehub import units
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.base.errors import BarehubError
from barehub.systemd import Systemctl
from barehub.validation import validate

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="check jupyterhub_config.d without side effects")
    add_prefix_argument(p)
    p.set_defaults(run=run)


def check_fragments(paths: Paths, systemctl: Systemctl) -> int:
    """Raises with every problem, each with its file:line; returns the number of fragments checked."""
    fragments, problems = validate(paths, hub_pids=(systemctl.main_pid(units.HUB_UNIT),))
    if problems:
        raise BarehubError(
            "the hub config has problems; the running hub was left alone:\n  "
            + "\n  ".join(str(p) for p in problems),
            f"fix the file(s) in {paths.config_d} and run: systemctl reload {units.HUB_UNIT}",
        )
    return len(fragments)


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    count = check_fragments(paths, Systemctl())
    log.info("config OK: %d fragment(s) checked in %s", count, paths.config_d)
    return 0
