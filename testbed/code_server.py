"""VS Code (code-server and its Node) for the app tests, built once per machine by barehub's own
`barehub apps install vscode` code (barehub.app_install) into the tests' cache, then bound read-only into the
containers: the test lanes have no network, and the build takes minutes (npm compiles native modules)."""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from barehub import app_install
from testbed.wheelhouse import CACHE

ENV = "BAREHUB_CODE_SERVER_BUILD"  # set by tests/run: built once before the lanes start


def build_code_server(cache: Path = CACHE) -> Path:
    """The cached build for this release's versions, made if missing (one process at a time)."""
    target = cache / f"code-server-{app_install.CODE_SERVER_VERSION}-node{app_install.NODE_VERSION}" / "code-server"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        record = app_install.installed(target) or {}
        if (record.get("code_server"), record.get("node")) != (app_install.CODE_SERVER_VERSION,
                                                              app_install.NODE_VERSION):
            app_install.install_code_server(target)
    return target


def code_server_build() -> Path:
    """tests/run's build, or one made now (a single module run on a machine with the registries)."""
    built = os.environ.get(ENV)
    return Path(built) if built else build_code_server()


if __name__ == "__main__":  # tests/run
    print(build_code_server())
