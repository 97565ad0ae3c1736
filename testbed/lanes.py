"""The whole suite in lanes that run side by side: each lane one pytest process in a network namespace of its own.

    python -m testbed.lanes --background tests/unit --lane tests/integration/test_slurm_cluster.py \
                            --host-lane tests/integration/test_upgrade.py --rest tests/integration -- -ra

Why lanes: most of an integration module's time is waiting (on a server, a job, a timeout, a reload), so modules in
different containers overlap well even on 2 cores. The single-container modules use fixed ports on the container's
host network (traefik on 28080, ...): two of them side by side would fight over those ports. So each lane gets its
own network namespace (`unshare --net`), and its container, its clients and its browser all live in it: each lane
has its own 127.0.0.1, and an interface with an address of its own, as a machine has (getaddrinfo's AI_ADDRCONFIG,
which Slurm uses for AF_INET, resolves nothing on loopback alone: measured here). Nothing in it leads anywhere
else. Within a lane, modules share one booted container and one install, as in one pytest run.

- `--host-lane`: the one lane on this machine's network, for modules that fetch from PyPI (the upgrade tests build
  their past releases' locks and wheelhouses); nothing else uses this machine's test ports.
- `--background`: tests that measure no time (the unit tests), at the lowest CPU priority, so they take only what
  the waiting lanes leave: timing-sensitive tests beside them see no more contention than the lanes bring.
- `--rest`: the last lane, every test module under its paths that no other lane names, so a new module always runs.

Each lane's output is kept in a file and printed whole when all are done, with the lane's wall time; the exit code
is the first failing lane's.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One lane in a network namespace of its own: loopback up, an interface with an address that leads nowhere (a veth
# pair with both ends inside: this machine's kernel has no dummy interfaces), then pytest. util-linux's unshare;
# `ip` from iproute2.
IN_OWN_NETWORK = ["unshare", "--net", "--", "sh", "-c",
                  "ip link set lo up && ip link add lane0 type veth peer name lane1 && "
                  "ip address add 10.254.254.1/32 dev lane0 && ip link set lane0 up && ip link set lane1 up && "
                  'exec "$@"', "lane"]
IN_BACKGROUND = ["nice", "-n", "19"]
STOP_WAIT_S = 120  # a lane's pytest tears its containers down on SIGINT; beyond this it is killed


def rest_of(paths: list[str], taken: list[str]) -> list[str]:
    """`paths` with every module another lane runs left out (as pytest --ignore options)."""
    return [*paths, *(f"--ignore={module}" for module in taken)]


def lane_commands(lanes: list[list[str]], rest: list[str], pytest_args: list[str], host_lane: list[str] = (),
                  background: list[str] = ()) -> list[list[str]]:
    python = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args]
    taken = [path for lane in [*lanes, host_lane, background] for path in lane]
    commands = [[*IN_BACKGROUND, *IN_OWN_NETWORK, *python, *background]] if background else []
    commands += [[*IN_OWN_NETWORK, *python, *lane] for lane in lanes]
    if host_lane:
        commands.append([*python, *host_lane])
    if rest:
        commands.append([*IN_OWN_NETWORK, *python, *rest_of(rest, taken)])
    return commands


def run(commands: list[list[str]]) -> int:
    logs = [tempfile.NamedTemporaryFile("w+", prefix=f"barehub-lane{i}-", suffix=".log", delete=False)
            for i in range(len(commands))]
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
             for cmd, log in zip(commands, logs)]
    walls: dict[int, float] = {}
    stopping: list[float] = []

    def stop(signum, frame):  # pytest tears its containers down on SIGINT
        stopping.append(time.monotonic())
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        while len(walls) < len(procs) and not (stopping and time.monotonic() - stopping[0] > STOP_WAIT_S):
            for i, proc in enumerate(procs):
                if i not in walls and proc.poll() is not None:
                    walls[i] = time.monotonic() - start
                    print(f"lanes: lane {i} done in {walls[i]:.0f} s, exit {proc.returncode}", flush=True)
            time.sleep(1)
    finally:
        stop(None, None)
        for proc in procs:
            try:
                proc.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for i, (cmd, log) in enumerate(zip(commands, logs)):
        print(f"\n{'=' * 30} lane {i} ({walls.get(i, 0):.0f} s): {' '.join(cmd[cmd.index('-m'):])}\n", flush=True)
        log.seek(0)
        sys.stdout.write(log.read())
        log.close()
        os.unlink(log.name)
    print(f"lanes: all done in {time.monotonic() - start:.0f} s", flush=True)
    return next((proc.returncode for proc in procs if proc.returncode), 0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lane", nargs="+", action="append", default=[], metavar="PATH", help="one lane's test paths")
    p.add_argument("--host-lane", nargs="+", default=[], metavar="PATH",
                   help="the one lane on this machine's network (modules that fetch from PyPI)")
    p.add_argument("--background", nargs="+", default=[], metavar="PATH",
                   help="a lane of tests that measure no time, at the lowest CPU priority")
    p.add_argument("--rest", nargs="+", default=[], metavar="PATH",
                   help="the last lane: these paths without what other lanes run")
    argv = sys.argv[1:] if argv is None else argv
    ours, pytest_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    args = p.parse_args(ours)
    named = [path for lane in [*args.lane, args.host_lane, args.background, args.rest] for path in lane]
    missing = [path for path in named if not Path(path).exists()]
    if missing:
        p.error(f"no such test path: {', '.join(missing)}")
    return run(lane_commands(args.lane, args.rest, pytest_args, args.host_lane, args.background))


if __name__ == "__main__":
    sys.exit(main())
