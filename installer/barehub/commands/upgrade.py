"""`barehub upgrade [X]`: move this install to release X (default: the newest the package source has).

It runs the bootstrap.py shipped with the current release, on the python that built the envs, so an
upgrade takes exactly the path of `sudo python3 bootstrap.py --version X`: the new env is built next
to the running one, and only then does the installer back up, migrate and restart.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from barehub.base.errors import BarehubError
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.base.records import remembered_source
from barehub.package_files import shipped


def add_parser(sub) -> None:
    p = sub.add_parser("upgrade", help="move to another release (backs up first; see also rollback)")
    p.add_argument("release", nargs="?", default="latest", help="the release, e.g. 2026.12.0 (default: latest)")
    add_prefix_argument(p)
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wheelhouse", type=Path, help="take the release from this wheelhouse (remembered)")
    src.add_argument("--index-url", help="take the release from this package index (remembered)")
    p.set_defaults(run=run)


def bootstrap_argv(paths: Paths, release: str, wheelhouse: Path | None, index_url: str | None) -> list[str]:
    python = remembered_source(paths).get("python") or "/usr/bin/python3"
    argv = [python, str(shipped("bootstrap.py")), "--prefix", str(paths.prefix), "--version", release]
    if wheelhouse:
        argv += ["--wheelhouse", str(wheelhouse.resolve())]
    if index_url:
        argv += ["--index-url", index_url]
    return argv


def run(args: argparse.Namespace) -> int:
    argv = bootstrap_argv(install_paths(args), args.release, args.wheelhouse, args.index_url)
    if not os.access(argv[0], os.X_OK):
        raise BarehubError(f"the python that built this install ({argv[0]}) is gone",
                           "run bootstrap.py --version X with the system python instead")
    os.execv(argv[0], argv)
