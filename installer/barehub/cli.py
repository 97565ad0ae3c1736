"""The `barehub` command. Errors are caught here, once, and mapped to exit codes."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from barehub import __version__
from barehub.commands import apps, check, doctor, install, reload, rollback, status, uninstall, upgrade, usage
from barehub.base.errors import BarehubError
from barehub.lazy_imports import defer_slow_imports
from barehub.terminal import PrintableFormatter, printable

COMMANDS = (install, check, reload, status, usage, upgrade, rollback, uninstall, doctor, apps)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="barehub", description="Manage a barehub JupyterHub install.")
    parser.add_argument("--version", action="version", version=f"barehub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    defer_slow_imports()  # check and reload load JupyterHub's classes (barehub.lazy_imports)
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(PrintableFormatter("barehub: %(message)s"))
    logger = logging.getLogger("barehub")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        return args.run(args)
    except BarehubError as e:
        print(printable(f"barehub: error: {e.message}"), file=sys.stderr)
        if e.hint:
            print(printable(f"barehub: hint: {e.hint}"), file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("barehub: interrupted", file=sys.stderr)
        return 130
