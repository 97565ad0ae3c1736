"""`barehub uninstall`: stop and remove the units; with --purge also the prefix."""
from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

from barehub import hub_run, units
from barehub.hub_api import HubAPI
from barehub.settings import load_settings
from barehub.base.errors import BarehubError
from barehub.base.machine import require_root
from barehub.layout import CLI_LINK
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.systemd import Systemctl, remove_unit_files

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("uninstall", help="stop and remove the units (and with --purge the prefix)")
    add_prefix_argument(p)
    p.add_argument("--purge", action="store_true", help="also delete the prefix: database, secrets, fragments")
    p.set_defaults(run=run)


def uninstall(paths: Paths, purge: bool, systemctl: Systemctl, unit_dir: Path = units.DEFAULT_UNIT_DIR,
              hub_api: HubAPI | None = None) -> None:
    require_root("barehub uninstall")
    stop_users_servers(hub_api or hub_api_of(paths))
    remove_unit_files(systemctl, units.ALL_UNITS, unit_dir)
    # local servers are their own units and outlive the hub by design; an uninstall ends any left too, and
    # forgets the failed ones (a server whose kernel or process was killed)
    systemctl.run("stop", units.USERS_SLICE, check=False)
    left = [u["unit"] for u in systemctl.loaded_units(units.USER_UNITS_GLOB) if u.get("Slice") == units.USERS_SLICE]
    if left:
        systemctl.run("reset-failed", *left, check=False)
    systemctl.daemon_reload()
    if CLI_LINK.is_symlink() and CLI_LINK.resolve().is_relative_to(paths.prefix):
        CLI_LINK.unlink()
    log.info("units stopped and removed")
    if purge:
        shutil.rmtree(paths.prefix)
        log.info("removed %s", paths.prefix)
    else:
        log.info("kept %s (database, secrets, fragments); remove it with --purge", paths.prefix)


def hub_api_of(paths: Paths) -> HubAPI:
    run = hub_run.read_run(paths)
    return HubAPI(paths, load_settings(paths).hub_port, run.base_url if run else "/")


def stop_users_servers(api: HubAPI) -> None:
    """Every user's server, whatever runs it (a local unit, a Slurm job, queued or running, a pod), is stopped
    through the hub while it still runs: stopping the hub leaves them all running by design."""
    try:
        left = api.stop_all_servers()
    except BarehubError as e:
        log.warning("could not stop the users' servers through the hub (%s): local servers are stopped below, "
                    "but servers elsewhere (Slurm jobs named jupyterhub-USER...) may still run or wait in the queue; "
                    "list them with: squeue -o '%%i %%u %%j %%T' | grep ' jupyterhub-'", e.message)
        return
    if left:
        log.warning("these servers had not stopped after 120 s: %s", ", ".join(left))
    else:
        log.info("users' servers stopped")


def run(args: argparse.Namespace) -> int:
    uninstall(install_paths(args), args.purge, Systemctl())
    return 0
