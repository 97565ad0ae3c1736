"""Loading the site's fragments: $PREFIX/jupyterhub_config.d/*.py, in lexicographic order, one shared `c`.

The hub loads either the current fragments or, after they failed to start, the known-good copy of the
last set with which it became healthy (see barehub.hub and barehub.known_good).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from traitlets.config import Config

CONFIG_SET_ENV = "BAREHUB_CONFIG_SET"
CURRENT, KNOWN_GOOD = "current", "known-good"
# What this process loaded last: its directory, files and digest (the hub records it in hub-run.json).
LOADED: dict = {}


def fragment_files(directory: Path) -> list[Path]:
    """The fragments that are loaded: top-level *.py files, not hidden ones, sorted by name."""
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith(".") and p.is_file())


def fragments_digest(contents: dict[str, bytes]) -> str:
    """One digest for a fragment set (names and contents): tells whether two sets are the same."""
    h = hashlib.sha256()
    for name in sorted(contents):
        h.update(name.encode() + b"\0" + hashlib.sha256(contents[name]).digest())
    return h.hexdigest()[:16]


def read_set(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in fragment_files(directory)}


def load_fragment(c: Config, path: Path, source: bytes | None = None) -> None:
    """Run one fragment as plain JupyterHub config.

    It is compiled with its own file name, so a traceback or SyntaxError names the file and line.
    """
    code = compile(path.read_bytes() if source is None else source, str(path), "exec")
    namespace = {"c": c, "get_config": lambda: c, "__file__": str(path), "__name__": "__jupyterhub_config__"}
    exec(code, namespace)


def load_fragments(c: Config, directory: Path) -> list[Path]:
    files = fragment_files(directory)
    contents = {p.name: p.read_bytes() for p in files}
    LOADED.clear()
    LOADED.update(directory=directory, files=files, digest=fragments_digest(contents))
    for path in files:
        load_fragment(c, path, contents[path.name])
    return files


def config_dir(config_d: Path, known_good: Path) -> Path:
    """Which fragments this hub process loads: the known-good ones only when barehub.hub fell back."""
    return known_good if os.environ.get(CONFIG_SET_ENV) == KNOWN_GOOD else config_d


def changed_since_known_good() -> list[str]:
    """Names of the loaded fragments that differ from (or are missing in) the known-good set."""
    from barehub.base.paths import Paths

    directory = LOADED.get("directory")
    if directory is None:
        return []
    known = read_set(Paths.from_prefix(os.environ["BAREHUB_PREFIX"]).known_good)
    current = read_set(directory)
    return sorted(name for name in set(current) | set(known) if current.get(name) != known.get(name))


def known_good_differs() -> bool:
    """Whether a known-good set exists that is not the set that just failed."""
    from barehub.base.paths import Paths

    known_good = Paths.from_prefix(os.environ["BAREHUB_PREFIX"]).known_good
    return known_good.is_dir() and fragments_digest(read_set(known_good)) != LOADED.get("digest")
