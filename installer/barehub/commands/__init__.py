"""One module per CLI command; each exposes `add_parser(subparsers)` and `run(args) -> int`.

Every command acts on one install: `--prefix`, else the install whose env this `barehub` runs from,
else the default prefix. A prefix that holds no install is refused (only `install` creates one).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from barehub.base.paths import DEFAULT_PREFIX, Paths, prefix_of_env
from barehub.base.errors import BarehubError


def add_prefix_argument(p: argparse.ArgumentParser, creates: bool = False) -> None:
    p.add_argument("--prefix", type=Path, help="the install to act on (default: the one this barehub "
                   f"belongs to, else {DEFAULT_PREFIX})")
    p.set_defaults(creates_install=creates)


def install_paths(args: argparse.Namespace) -> Paths:
    paths = Paths.from_prefix(args.prefix or prefix_of_env() or DEFAULT_PREFIX)
    if not args.creates_install and not paths.is_install():
        raise BarehubError(f"{paths.prefix} is not a barehub install (no {paths.settings_file.relative_to(paths.prefix)})",
                           "give the --prefix of an install", exit_code=2)
    return paths
