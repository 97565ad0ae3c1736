"""Which release's env is current: the PREFIX/conda link, switched atomically."""
from __future__ import annotations

import os
from pathlib import Path

from .paths import Paths


def switch_current_env(paths: Paths, env_dir: Path) -> None:
    """Point PREFIX/conda at `env_dir`, atomically: the units and the CLI use that path."""
    tmp = paths.prefix / ".conda.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(env_dir.relative_to(paths.prefix))
    os.replace(tmp, paths.env)
