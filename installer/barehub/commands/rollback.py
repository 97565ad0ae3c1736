"""`barehub rollback`: go back to the release before the last upgrade, with its database.

Uses the newest backup (or --backup NAME): its env is still in PREFIX/envs, so nothing is downloaded.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from barehub import release_change, releases, units
from barehub.base import upgrade_unit
from barehub.base.errors import BarehubError
from barehub.base.current_env import switch_current_env
from barehub.base.install_lock import InstallLock
from barehub.base.machine import require_root
from barehub.base.records import open_no_follow
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("rollback", help="restore the previous release's env and database backup")
    add_prefix_argument(p)
    p.add_argument("--backup", help="the backup to restore (a name in PREFIX/backups; default: the newest)")
    p.add_argument("--list", action="store_true", help="list the backups and exit")
    p.set_defaults(run=run)


def choose_backup(paths: Paths, name: str | None) -> Path:
    backups = releases.list_backups(paths)
    if name:
        chosen = paths.backups / name
        if chosen not in backups:
            raise BarehubError(f"no backup {name} in {paths.backups}", "see: barehub rollback --list")
        return chosen
    if not backups:
        raise BarehubError(f"no backups in {paths.backups}", "backups are taken when an upgrade changes the release")
    return backups[-1]


def checked(paths: Paths, backup_name: str | None) -> tuple[Path, releases.Release, Path]:
    """The backup, its release and that release's env, or the error that refuses the rollback before anything
    stops: run here before the rollback is handed to its unit too, so that a refusal is said at once."""
    require_root("barehub rollback")
    chosen = choose_backup(paths, backup_name)
    target = releases.backup_release(paths, chosen)
    env = paths.prefix / target.env
    if not (env / "bin" / "python").exists():
        raise BarehubError(f"the env of release {target.version} ({env}) is gone",
                           f"reinstall it: python3 bootstrap.py --version {target.version}")
    refuse_planted_files(paths)  # a refused rollback leaves the hub serving
    return chosen, target, env


def rollback(paths: Paths, backup_name: str | None, systemctl: Systemctl) -> releases.Release:
    chosen, target, env = checked(paths, backup_name)
    log.info("rolling back to release %s with the database of %s", target.version, chosen.name)
    systemctl.stop(units.HUB_UNIT)
    release_change.stop_servers_unknown_to(paths, target, systemctl)
    release_change.give_routes_back_to(paths, target)
    release_change.give_layout_back_to(paths, target)
    releases.restore(paths, chosen)
    switch_current_env(paths, env)
    systemctl.reset_failed(units.HUB_UNIT)  # a hub that crash-looped (an interrupted upgrade) starts again
    release_change.finish(paths)  # an upgrade that was under way is over
    return target


def unit_argv(paths: Paths, backup: str | None) -> list[str]:
    """This very rollback, as the unit runs it (this env's python: the rollback execs the restored release's
    installer, whose env it keeps)."""
    return [sys.executable, "-P", "-m", "barehub", "rollback", "--prefix", str(paths.prefix),
            *(["--backup", backup] if backup else [])]


def refuse_planted_files(paths: Paths) -> None:
    """What a rollback writes or reads in the hub user's directories (the database the backup goes into, the
    routes it may give back): a link or FIFO there is named, and nothing is stopped or written."""
    for path in (paths.db_file, paths.proxy_routes, paths.traefik_rules):
        try:
            os.close(open_no_follow(path))
        except FileNotFoundError:
            pass


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    if args.list:
        for backup in releases.list_backups(paths):
            print(backup.name)
        return 0
    if upgrade_unit.can_hand_over():  # outlives this session: see barehub.base.upgrade_unit
        checked(paths, args.backup)
        return upgrade_unit.run_in_unit(paths, unit_argv(paths, args.backup), print, what="rollback")
    lock = InstallLock(paths).acquire()
    rollback(paths, args.backup, Systemctl())
    # converge with the restored release's own installer (units, proxy config), which starts the hub
    lock.exec_installer(paths.env_bin / "python", paths.prefix)
