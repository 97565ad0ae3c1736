"""Where things are: the install's layout (Paths, owned by barehub.shared, which bootstrap.py shares),
and what the package ships inside itself."""
from __future__ import annotations

from pathlib import Path

import barehub
from barehub.shared import DEFAULT_PREFIX, Paths, prefix_of_env  # noqa: F401 (the layout's one owner)


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
