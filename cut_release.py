#!/usr/bin/env python3
"""Cut a barehub release: `python3 cut_release.py 2026.12.0` (standard library only, Python >= 3.11).

A release is one VERSION (in bootstrap.py; pyproject.toml and the package read it from there) and one set of
exact pins (pyproject.toml's dependencies, which environment.yml and requirements.lock must carry too), and
sites follow it through its CHANGELOG.md entry. This script holds those facts together:

1. it refuses, before changing anything, a version that is not date-based (YYYY.MM.N) or not later than the
   current one, a CHANGELOG.md without an entry for it (what changed and its "Upgrade notes"), and a version
   the code already spells (a test's "another release" that would silently become this checkout's);
2. it regenerates requirements.lock from pyproject.toml (LOCK_COMMAND, with uv), brings environment.yml's pins
   in step with pyproject.toml's, and bumps VERSION in bootstrap.py;
3. it prints the git commands that commit and tag the release, and does not run them: the whole test suite
   (`sudo tests/run`, which needs root and containers) must pass on the prepared tree first, and a tag is
   what sites follow, so it is made by a person after that, not by this script.
"""
from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Callable, Optional, Sequence

ROOT = Path(__file__).resolve().parent
VERSION_FILE = "bootstrap.py"
# hatchling's default version pattern: pyproject.toml's [tool.hatch.version] reads VERSION_FILE with it, so
# the line this finds is the one definition of the release (a test checks it finds exactly one).
VERSION_LINE = re.compile(r"""(?im)^(__version__|VERSION) *= *(['"])v?(?P<version>.+?)\2""")
RELEASE = re.compile(r"(?P<year>20\d\d)\.(?P<month>\d{1,2})\.(?P<n>\d+)")
CHANGELOG = "CHANGELOG.md"
UPGRADE_NOTES = "### Upgrade notes"
LOCK = "requirements.lock"
LOCK_COMMAND = ("pip", "compile", "pyproject.toml", "--universal", "--generate-hashes", "--python-version", "3.11",
                "-o", LOCK)  # run with uv in the repository; the lock's header repeats it
ENVIRONMENT = "environment.yml"
ENV_PIN = re.compile(r"^(?P<lead>\s*- )(?P<name>[A-Za-z0-9_.-]+)(?P<op>==?)(?P<version>[^\s#]+)(?P<tail>.*)$",
                     re.M)
CONDA_LOCK = ("conda-lock lock -f environment.yml -p linux-64 -p linux-aarch64 -k explicit "
              "--filename-template 'conda-{platform}.lock'")
SKIPPED_DIRS = {".git", "node_modules", "__pycache__", "test-artifacts", "build", "dist"}


class ReleaseError(Exception):
    """A release refused, saying why (and, if it came after the lock was regenerated, that it was)."""


# ---------------------------------------------------------------- the version

def release_key(version: str) -> tuple[int, int, int]:
    """A date-based release (YYYY.MM.N, month 1-12) as a comparable key."""
    match = RELEASE.fullmatch(version)
    if not match or not 1 <= int(match["month"]) <= 12:
        raise ReleaseError(f"{version!r} is not a date-based release YYYY.MM.N")
    return int(match["year"]), int(match["month"]), int(match["n"])


def version_match(root: Path) -> re.Match:
    text = (root / VERSION_FILE).read_text()
    matches = list(VERSION_LINE.finditer(text))
    if len(matches) != 1:
        raise ReleaseError(f"{VERSION_FILE} must define the release in exactly one line, found {len(matches)}")
    return matches[0]


def current_version(root: Path) -> str:
    return version_match(root)["version"]


def with_version(root: Path, version: str) -> str:
    """VERSION_FILE's text with its one VERSION line set to `version`."""
    match = version_match(root)
    text = match.string
    return text[:match.start("version")] + version + text[match.end("version"):]


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def python_files(root: Path):
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith(".venv"))
        for name in sorted(files):
            if name.endswith(".py"):
                yield Path(directory) / name


def spellings(root: Path, version: str) -> list[str]:
    """Where Python code under `root` spells `version` in a string, as "path:line", besides the one definition.

    Comments and docstrings are left out: what they say of a version is its history ("releases up to X kept
    ..."). A string is code: one that holds the current release should derive it (bootstrap.VERSION, the
    tests' this_release()); one that means another release must not be this checkout's, or its test changes
    meaning the day the release is cut.
    """
    token = re.compile(rf"(?<![\d.]){re.escape(version)}(?![\d])")
    match = version_match(root)
    definition = (root / VERSION_FILE, match.string.count("\n", 0, match.start()) + 1)
    found = []
    for path in python_files(root):
        try:
            tree = ast.parse(path.read_text(), str(path))
        except (SyntaxError, UnicodeDecodeError):
            continue
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip \
                    and token.search(node.value) and (path, node.lineno) != definition:
                found.append((str(path.relative_to(root)), node.lineno))
    return [f"{path}:{line}" for path, line in sorted(set(found))]


# ---------------------------------------------------------------- the pins

def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(pyproject_text: str) -> dict[str, str]:
    """pyproject.toml's dependencies, each pinned exactly (name==version): the hub stack a release is."""
    found = {}
    for dependency in tomllib.loads(pyproject_text)["project"]["dependencies"]:
        name, sep, version = dependency.partition("==")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name.strip()):
            raise ReleaseError(f"pyproject.toml: {dependency!r} is not an exact pin (name==version)")
        found[normal(name.strip())] = version.strip()
    return found


def environment_pins(environment_text: str) -> dict[str, str]:
    """environment.yml's pins, conda's (`- name=version`) and pip's (`- name==version`) alike."""
    return {normal(m["name"]): m["version"] for m in ENV_PIN.finditer(environment_text)}


def lock_pins(lock_text: str) -> dict[str, str]:
    """requirements.lock's versions (`name==version \\` lines, as uv writes them)."""
    return {normal(m[1]): m[2] for m in re.finditer(r"^([A-Za-z0-9_.-]+)==(\S+)", lock_text, re.M)}


def environment_in_step(environment_text: str, wanted: dict[str, str]) -> str:
    """environment.yml with each of `wanted`'s pins set, its `=` or `==` kept; a pin it lacks is refused (whether
    it is a conda or a pip package there is a person's choice)."""
    missing = sorted(set(wanted) - set(environment_pins(environment_text)))
    if missing:
        raise ReleaseError(f"{ENVIRONMENT} does not pin {', '.join(missing)}: add each (conda `- name=version`, "
                           f"or under pip: `- name==version`)")

    def pinned(m: re.Match) -> str:
        version = wanted.get(normal(m["name"]), m["version"])
        return f"{m['lead']}{m['name']}{m['op']}{version}{m['tail']}"
    return ENV_PIN.sub(pinned, environment_text)


def disagreements(wanted: dict[str, str], have: dict[str, str]) -> list[str]:
    return [f"{name}: {have.get(name, 'missing')}, not {version}" for name, version in sorted(wanted.items())
            if have.get(name) != version]


# ---------------------------------------------------------------- the changelog

def changelog_entry(changelog_text: str, version: str) -> Optional[str]:
    """The text of CHANGELOG.md's `## VERSION ...` entry, up to the next `## ` heading; None without one."""
    match = re.search(rf"^## {re.escape(version)}(?![\d.]).*?$(?P<body>.*?)(?=^## |\Z)", changelog_text, re.M | re.S)
    return match["body"] if match else None


def check_changelog(root: Path, version: str) -> None:
    path = root / CHANGELOG
    entry = changelog_entry(path.read_text() if path.is_file() else "", version)
    if entry is None:
        raise ReleaseError(f"{CHANGELOG} has no entry for {version}: write `## {version} ({{date}})` with what "
                           f"changed for admins and users and its `{UPGRADE_NOTES}` (rename `## Unreleased`)")
    notes = entry.partition(UPGRADE_NOTES)[2] if UPGRADE_NOTES in entry else ""
    if not notes.strip():
        raise ReleaseError(f"{CHANGELOG}'s entry for {version} has no `{UPGRADE_NOTES}`: say what an admin must do "
                           f"when upgrading to it, or that nothing is needed")


# ---------------------------------------------------------------- cutting

def uv_lock(uv: str) -> Callable[[Path], None]:
    def lock(root: Path) -> None:
        proc = subprocess.run([uv, *LOCK_COMMAND], cwd=root, capture_output=True, text=True)
        if proc.returncode:
            raise ReleaseError(f"regenerating {LOCK} failed ({uv} {' '.join(LOCK_COMMAND)}):\n{proc.stderr.strip()}")
    return lock


def cut(root: Path, version: str, lock: Callable[[Path], None]) -> list[str]:
    """Prepare release `version` in the repository at `root`; returns what changed, one line each.

    Every refusal comes before the first write. `lock` regenerates requirements.lock (uv_lock; tests give
    their own)."""
    current = current_version(root)
    if release_key(version) <= release_key(current):
        raise ReleaseError(f"{version} is not later than the current release {current}")
    check_changelog(root, version)
    spelled = spellings(root, version)
    if spelled:
        raise ReleaseError(f"the code already spells {version} (as another release, or an example); once it is "
                           f"this checkout's release they would mean it. Derive the current one "
                           f"(bootstrap.VERSION) or name another release in:\n  " + "\n  ".join(spelled))
    wanted = pins((root / "pyproject.toml").read_text())
    environment = (root / ENVIRONMENT).read_text()
    new_environment = environment_in_step(environment, wanted)

    lock(root)
    wrong = disagreements(wanted, lock_pins((root / LOCK).read_text()))
    if wrong:
        raise ReleaseError(f"the regenerated {LOCK} does not carry pyproject.toml's pins: {'; '.join(wrong)} "
                           f"(nothing else was changed; `git checkout {LOCK}` undoes the lock)")
    changed = [f"{LOCK}: regenerated ({' '.join(LOCK_COMMAND)})"]
    if new_environment != environment:
        before = environment_pins(environment)
        (root / ENVIRONMENT).write_text(new_environment)
        changed.append(f"{ENVIRONMENT}: " + ", ".join(f"{name} {before[name]} -> {v}" for name, v in
                                                     sorted(wanted.items()) if before[name] != v))
    (root / VERSION_FILE).write_text(with_version(root, version))
    changed.append(f"{VERSION_FILE}: VERSION {current} -> {version}")
    return changed


def next_steps(root: Path, version: str) -> str:
    steps = []
    if any(root.glob("conda-*.lock")):
        steps.append(f"regenerate the conda locks (a conda channel must be reachable):\n  {CONDA_LOCK}")
    steps.append("run the whole test suite on this tree:\n  sudo tests/run")
    files = " ".join([VERSION_FILE, LOCK, ENVIRONMENT, CHANGELOG] + sorted(p.name for p in root.glob("conda-*.lock")))
    steps.append(f"then commit and tag the release:\n  git add {files}\n  git commit -m 'Release {version}'\n"
                 f"  git tag -a {version} -m 'barehub {version}'")
    return "\n".join(f"{i}. {step}" for i, step in enumerate(steps, 1))


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="cut_release.py", description=__doc__.split("\n\n")[0])
    p.add_argument("version", help="the new release, YYYY.MM.N, later than the current one")
    p.add_argument("--uv", default=shutil.which("uv"), help="uv, which regenerates requirements.lock "
                                                             "(default: uv on PATH)")
    p.add_argument("--root", type=Path, default=ROOT, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        if not args.uv:
            raise ReleaseError("uv is needed to regenerate requirements.lock: pip install uv, or give --uv PATH")
        changed = cut(args.root, args.version, uv_lock(args.uv))
    except ReleaseError as e:
        print(f"cut_release.py: refused: {e}", file=sys.stderr)
        return 1
    print(f"release {args.version} prepared:\n" + "".join(f"  {line}\n" for line in changed)
          + "Not committed. Next:\n" + next_steps(args.root, args.version))
    return 0


if __name__ == "__main__":
    sys.exit(main())
