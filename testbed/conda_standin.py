#!/usr/bin/python3
"""A stand-in for conda, for testing barehub's default (conda) backend where no conda channel is reachable.

Neither this machine nor CI can reach a conda channel, so a real conda could not build barehub's env here.
This script answers exactly the commands bootstrap.py gives an executable named `conda` (see
bootstrap.plan_conda_env), with conda's own spelling of them, and refuses any other command with exit 2,
so that a change in what barehub asks of conda fails the test instead of passing unnoticed:

    conda env create --yes --prefix PREFIX --file DIR/environment.yml   (a new env)
    conda env update --prefix PREFIX --file DIR/environment.yml         (an existing one; conda's
                                                                          `env update` has no --yes)

It builds the env the way the release's pip lock says, as a venv at PREFIX: `DIR/requirements.lock`, which
every release ships beside its environment.yml with the same pins (a unit test holds them together), installed
hash-checked from the wheelhouse of locked wheels (CONDA_STANDIN_WHEELHOUSE). Every pin of environment.yml
must be in that lock, or it refuses: the env has what environment.yml asks for, or there is none. Two things
differ from conda, and the test does not rely on either: the python is this one (the wheels are built for it),
not environment.yml's, and the packages are wheels, not conda packages. Like conda it records each command in
PREFIX/conda-meta/history, which is how an admin tells a conda env; and it appends each command it is given,
before running it, to the log CONDA_STANDIN_LOG (one JSON list per line), so the test can see what barehub
asked for.

Standard library only: it runs on the system python of the container the test boots.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

WHEELHOUSE_VAR, LOG_VAR = "CONDA_STANDIN_WHEELHOUSE", "CONDA_STANDIN_LOG"
PIP_LOCK = "requirements.lock"
NOT_PINNED_BY_THE_LOCK = {"python", "pip"}  # the env's python is this one, and venv brings pip


class Refused(Exception):
    """A command or input this stand-in does not build from: it says so and exits 2, as conda does for usage."""


def wrapper_script(script: str, wheelhouse: str, log: str) -> str:
    """The `conda` to put on a machine's PATH: this script (at `script` on that machine), with its wheelhouse
    and log (paths on that machine)."""
    return (f"#!/bin/sh\n# a stand-in for conda ({Path(script).name}): no conda channel is reachable here\n"
            f"export {WHEELHOUSE_VAR}={wheelhouse} {LOG_VAR}={log}\n"
            f'exec /usr/bin/python3 {script} "$@"\n')


class Parser(argparse.ArgumentParser):
    def error(self, message):
        raise Refused(f"{message} (the stand-in answers only the commands barehub runs)")


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="conda", add_help=False, allow_abbrev=False)
    commands = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    env = commands.add_parser("env", add_help=False, allow_abbrev=False).add_subparsers(dest="verb", required=True, parser_class=Parser)
    create = env.add_parser("create", add_help=False, allow_abbrev=False)
    create.add_argument("-y", "--yes", action="store_true", required=True)
    for verb in (create, env.add_parser("update", add_help=False, allow_abbrev=False)):
        verb.add_argument("-p", "--prefix", type=Path, required=True)
        verb.add_argument("-f", "--file", type=Path, required=True)
    return p


def yml_pins(env_file: Path) -> list[tuple[str, str]]:
    """(name, version) of every dependency of environment.yml, conda's `name=version` and pip's `name==version`
    alike; a dependency without an exact version is refused (the stand-in builds only what a lock pins)."""
    pins, in_dependencies = [], False
    for line in env_file.read_text().splitlines():
        text = line.split("#", 1)[0].rstrip()
        if not text:
            continue
        if not text.startswith(" "):
            in_dependencies = text == "dependencies:"
            continue
        item = text.strip()
        if not in_dependencies or not item.startswith("- ") or item == "- pip:":
            continue
        spec = item[2:].strip()
        match = re.fullmatch(r"([A-Za-z0-9_.\-]+)\s*==?\s*([A-Za-z0-9_.\-]+)", spec)
        name = re.split(r"[=<>!~ ]", spec, maxsplit=1)[0]
        if name in NOT_PINNED_BY_THE_LOCK:
            continue
        if not match:
            raise Refused(f"{env_file}: {spec!r} is not pinned to one version")
        pins.append((match.group(1), match.group(2)))
    if not pins:
        raise Refused(f"{env_file} has no dependencies the stand-in understands")
    return pins


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_beside(env_file: Path) -> Path:
    """The release's pip lock next to its environment.yml, checked to pin everything environment.yml asks for."""
    if env_file.name != "environment.yml" or not env_file.is_file():
        raise Refused(f"{env_file} is not an environment.yml (the only input the stand-in builds from)")
    lock = env_file.parent / PIP_LOCK
    if not lock.is_file():
        raise Refused(f"no {PIP_LOCK} beside {env_file}: the stand-in builds the env from the release's pip lock")
    locked = {normalized(m.group(1)): m.group(2)
              for m in re.finditer(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)", lock.read_text(), re.M)}
    for name, version in yml_pins(env_file):
        if locked.get(normalized(name)) != version:
            raise Refused(f"{env_file} asks for {name}={version}, which {lock} does not pin "
                          f"({locked.get(normalized(name), 'absent')}): the stand-in cannot build it")
    return lock


def run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd), flush=True)
    proc = subprocess.run(cmd)
    if proc.returncode:
        sys.exit(proc.returncode)


def wheelhouse() -> str:
    found = os.environ.get(WHEELHOUSE_VAR)
    if not found:
        raise Refused(f"{WHEELHOUSE_VAR} is not set: the stand-in installs from a wheelhouse of the locked wheels")
    return found


def install_locked(prefix: Path, lock: Path, wheels: str) -> None:
    run([str(prefix / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "--no-index", "--find-links", wheels, "--require-hashes", "--only-binary=:all:", "-r", str(lock)])


def record_history(prefix: Path, argv: list[str]) -> None:
    """conda-meta/history, as conda keeps it: one entry per command that changed the env."""
    (prefix / "conda-meta").mkdir(exist_ok=True)
    with open(prefix / "conda-meta" / "history", "a") as f:
        f.write(f"==> {time.strftime('%Y-%m-%d %H:%M:%S')} <==\n# cmd: conda {' '.join(argv)}\n"
                "# conda version: stand-in (testbed/conda_standin.py)\n")


def main(argv: list[str]) -> int:
    log = os.environ.get(LOG_VAR)
    if log:
        with open(log, "a") as f:
            f.write(json.dumps(argv) + "\n")
    try:
        args = parser().parse_args(argv)
        lock, wheels, prefix = lock_beside(args.file), wheelhouse(), args.prefix
        if args.verb == "create":
            if prefix.exists() and any(prefix.iterdir()):
                raise Refused(f"{prefix} exists and is not empty: barehub creates envs only where there is none")
            run([sys.executable, "-m", "venv", str(prefix)])
        elif not (prefix / "conda-meta" / "history").is_file():
            raise Refused(f"{prefix} is not a conda env (no conda-meta/history)")
        install_locked(prefix, lock, wheels)
        record_history(prefix, argv)
    except Refused as e:
        print(f"conda (stand-in): error: {e}\n  command: conda {' '.join(argv)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
