"""Loading the site's fragments: $PREFIX/jupyterhub_config.d/*.py, in lexicographic order, one shared `c`."""
from __future__ import annotations

from pathlib import Path

from traitlets.config import Config


def fragment_files(directory: Path) -> list[Path]:
    """The fragments that are loaded: top-level *.py files, not hidden ones, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith(".") and p.is_file())


def load_fragment(c: Config, path: Path) -> None:
    """Run one fragment as plain JupyterHub config.

    It is compiled with its own file name, so a traceback or SyntaxError names the file and line.
    """
    code = compile(path.read_bytes(), str(path), "exec")
    namespace = {"c": c, "get_config": lambda: c, "__file__": str(path), "__name__": "__jupyterhub_config__"}
    exec(code, namespace)


def load_fragments(c: Config, directory: Path) -> list[Path]:
    files = fragment_files(directory)
    for path in files:
        load_fragment(c, path)
    return files
