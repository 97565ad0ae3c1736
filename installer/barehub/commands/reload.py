"""`barehub reload`: apply changed fragments without ever leaving the hub down (the hub unit's ExecReload).

Checks the fragments, asks the hub to restart in place with them (SIGHUP, see barehub.hub) and returns only
once the new hub answers /hub/health through traefik. If it cannot start or become healthy, the hub is back
on the last known-good fragments and this fails, naming the file and the error (systemctl status shows it).
"""
from __future__ import annotations

import argparse
import logging
import signal
import time

from barehub import hub_run, known_good, postgres, units
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.fragment_check import FragmentProblems, check_and_record
from barehub.settings import load_settings
from barehub.base.errors import BarehubError
from barehub.base.install_lock import InstallLock
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("reload", help="apply changed fragments: check, restart the hub in place, wait until it serves")
    add_prefix_argument(p)
    p.set_defaults(run=run)


def reload(paths: Paths, systemctl: Systemctl) -> float:
    """Returns the seconds until the new hub answered through traefik."""
    settings = load_settings(paths)
    if not systemctl.is_active(units.HUB_UNIT):
        raise BarehubError(f"{units.HUB_UNIT} is not running", f"start it: systemctl start {units.HUB_UNIT}")
    try:
        check_and_record(paths, systemctl)  # kept for `barehub status` while the files on disk are refused
    except FragmentProblems as e:
        raise BarehubError(e.refusal("the running hub was left alone"),
                           f"fix the file(s) in {paths.config_d} and run: systemctl reload {units.HUB_UNIT}") from None
    postgres.check_reachable(settings, "the running hub was left alone")  # a hub restarted now could not start
    since = time.time()
    systemctl.kill_main(units.HUB_UNIT, signal.SIGHUP)
    run, seconds = hub_run.wait_until_serving(paths, settings, since, systemctl)
    if not known_good.promote(paths, run.digest, settings.hub_user):
        log.warning("the fragments changed while the hub restarted: not recording them as known-good")
    return seconds


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    with_lock = InstallLock(paths).acquire()  # not while an install or upgrade changes things
    try:
        seconds = reload(paths, Systemctl())
    finally:
        with_lock.release()
    log.info("reloaded: the hub answers with the new config (%.1f s)", seconds)
    return 0
