"""`barehub check`: validate the fragments without touching the running hub (reload runs it first)."""
from __future__ import annotations

import argparse
import logging

from barehub import postgres, units
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.base.errors import BarehubError
from barehub.fragment_check import FragmentProblems, check_and_record
from barehub.settings import load_settings
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="check jupyterhub_config.d without side effects")
    add_prefix_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    try:
        count = check_and_record(paths, Systemctl())
    except FragmentProblems as e:
        raise BarehubError(e.refusal("the running hub was left alone"),
                           f"fix the file(s) in {paths.config_d} and run: systemctl reload {units.HUB_UNIT}") from None
    log.info("config OK: %d fragment(s) checked in %s", count, paths.config_d)
    settings = load_settings(paths)
    server = postgres.check_reachable(settings, "the running hub was left alone")
    if server:
        log.info("database OK: %s answers (PostgreSQL %d)", settings.db_url, server.major)
    return 0
