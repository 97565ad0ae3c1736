"""`barehub doctor slurm --user NAME`: try every hop a user's server job needs, and say which one fails."""
from __future__ import annotations

import argparse
import logging

from barehub import slurm_doctor
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.errors import BarehubError

log = logging.getLogger("barehub")


def add_parser(sub) -> None:
    p = sub.add_parser("doctor", help="try the hops users' servers need (Slurm: a test job as a user)")
    p.add_argument("what", choices=["slurm"], help="what to check")
    p.add_argument("--user", required=True, help="submit the test job as this user (one who may start a server)")
    p.add_argument("--partition", default="", help="the test job's partition (default: Slurm's default)")
    p.add_argument("--timeout", type=float, default=120, help="seconds to wait for the job to start (default 120)")
    add_prefix_argument(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    slurm_doctor.require_root()
    hops = slurm_doctor.run(args.user, paths, args.partition, args.timeout)
    for hop in hops:
        log.info("%-4s  %s", "ok" if hop.ok else "FAIL", hop.detail)
    failed = [hop for hop in hops if not hop.ok]
    if failed:
        raise BarehubError(f"doctor slurm: {failed[0].name} failed ({len(hops) - len(failed)} of {len(hops)} "
                           f"hops tried passed)", failed[0].hint)
    log.info("doctor slurm: all %d hops passed", len(hops))
    return 0
