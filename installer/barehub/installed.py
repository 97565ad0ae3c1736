"""What the current env runs: package versions and traefik's (asked of the env itself, not this process)."""
from __future__ import annotations

import subprocess

from barehub.base.paths import Paths


def package_version(paths: Paths, name: str) -> str:
    code = f"from importlib.metadata import version; print(version({name!r}))"
    out = subprocess.run([str(paths.python), "-c", code], capture_output=True, text=True)
    return out.stdout.strip() or "not installed"


def traefik_version(paths: Paths) -> str:
    try:
        out = subprocess.run([str(paths.traefik_bin), "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    for line in out.stdout.splitlines():
        if line.startswith("Version:"):
            return line.split(":", 1)[1].strip()
    return "unknown"
