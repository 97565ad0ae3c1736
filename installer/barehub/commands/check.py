"""`barehub check`: validate the fragments without touching the running hub (used by reload)."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from barehub.errors import BarehubError
from barehub.paths import Paths
from barehub.validation import validate

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="check jupyterhub_config.d without side effects")
    p.add_argument("--prefix", type=Path, default=Path("/opt/barehub"))
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = Paths.from_prefix(args.prefix)
    fragments, problems = validate(paths)
    if problems:
        raise BarehubError(
            "the hub config has problems; the running hub was left alone:\n  "
            + "\n  ".join(str(p) for p in problems),
            f"fix the file(s) in {paths.config_d} and run: systemctl reload jupyterhub",
        )
    log.info("config OK: %d fragment(s) checked in %s", len(fragments), paths.config_d)
    return 0
