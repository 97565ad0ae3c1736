"""`barehub usage`: who used how much CPU, memory and GPU, per user, group or profile (barehub.usage)."""
from __future__ import annotations

import argparse
import time

from barehub import usage, usage_sources
from barehub.base.errors import BarehubError
from barehub.commands import add_prefix_argument, install_paths


def add_parser(sub) -> None:
    p = sub.add_parser("usage", help="CPU, memory and GPU hours per user, group or profile (UTC)")
    add_prefix_argument(p)
    p.add_argument("--since", help="from this date or moment, UTC unless it says its zone (default: the first of "
                                   "this month)")
    p.add_argument("--until", help="until this date or moment (default: now); a date means its midnight")
    p.add_argument("--by", choices=usage.BY, default="user", help="one line per user (default), group or profile")
    p.add_argument("--user", help="only this user's sessions")
    p.add_argument("--group", help="only the sessions charged to this unix group (the user's primary group)")
    p.add_argument("--source", choices=usage_sources.SOURCES, default="all",
                   help="local servers (systemd), Slurm jobs (sacct), or all (default; Slurm where sacct is "
                        "installed)")
    output = p.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="machine-readable output")
    output.add_argument("--csv", action="store_true", help="CSV for a spreadsheet: a line per key and a total")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    paths = install_paths(args)
    now = time.time()
    window = usage.window_of(args.since, args.until, now)
    group = usage_sources.known_group(args.group) if args.group else None
    user = usage_sources.known_user(args.user) if args.user else None
    gathered = usage_sources.gather(paths, window, now, args.source)
    sessions = gathered.sessions
    if user:
        sessions = usage_sources.of_user(sessions, user)
        if not sessions and not usage_sources.account_exists(user):
            raise BarehubError(f"--user {user!r}: no such user here, and no session of that name",
                               "give a login name as the hub shows it")
    if group:
        sessions = usage_sources.of_group(sessions, group)
    report = usage.summarize(sessions, window, args.by, now, gathered.sources)
    print(usage.as_json(report) if args.json else usage.as_csv(report) if args.csv else usage.as_table(report),
          end="" if args.csv else "\n")
    return 0
