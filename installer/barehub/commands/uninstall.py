"""`barehub uninstall`: stop and remove the units; with --purge also the prefix."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
from pathlib import Path

from barehub import units
from barehub.shared import BarehubError
from barehub.layout import CLI_LINK
from barehub.commands import add_prefix_argument, install_paths
from barehub.paths import Paths
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("uninstall", help="stop and remove the units (and with --purge the prefix)")
    add_prefix_argument(p)
    p.add_argument("--purge", action="store_true", help="also delete the prefix: database, secrets, fragments")
    p.set_defaults(run=run)


def uninstall(paths: Paths, purge: bool, systemctl: Systemctl, unit_dir: Path = units.DEFAULT_UNIT_DIR) -> None:
    if os.geteuid() != 0:
        raise BarehubError("barehub uninstall must run as root", "run it with sudo")
    systemctl.disable_now(units.ALL_UNITS)
    # user servers are their own units and outlive the hub by design; an uninstall ends them too, and
    # forgets the failed ones (a server whose kernel or process was killed)
    systemctl.run("stop", units.USERS_SLICE, check=False)
    systemctl.run("reset-failed", units.USER_UNITS_GLOB, check=False)
    for name in units.ALL_UNITS:
        (unit_dir / name).unlink(missing_ok=True)
    systemctl.daemon_reload()
    if CLI_LINK.is_symlink() and CLI_LINK.resolve().is_relative_to(paths.prefix):
        CLI_LINK.unlink()
    log.info("units stopped and removed")
    if purge:
        shutil.rmtree(paths.prefix)
        log.info("removed %s", paths.prefix)
    else:
        log.info("kept %s (database, secrets, fragments); remove it with --purge", paths.prefix)


def run(args: argparse.Namespace) -> int:
    uninstall(install_paths(args), args.purge, Systemctl())
    return 0
