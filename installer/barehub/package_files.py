"""The files the package ships inside itself (in a checkout: at the repository's top level)."""
from __future__ import annotations

from pathlib import Path

import barehub


def package_dir() -> Path:
    return Path(barehub.__file__).resolve().parent


def base_config_file() -> Path:
    """The hub's own config, kept out of sight inside the package."""
    return package_dir() / "jupyterhub_config.py"


def shipped(name: str) -> Path:
    """A file or directory the wheel ships inside the package (systemd/, jupyterhub_config.d/, bootstrap.py).

    In a source checkout these live at the repository's top level instead.
    """
    inside = package_dir() / name
    return inside if inside.exists() else package_dir().parents[1] / name
