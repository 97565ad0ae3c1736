"""The base layout under the prefix: which directories exist, who owns them, and their modes."""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from barehub.base.errors import BarehubError
from barehub.fsutil import FileSpec, chown_contents, ensure_dir, log, primary_group, uid_gid, uid_of
from barehub.base.paths import Paths
from barehub.package_files import shipped
from barehub.settings import Settings

CLI_LINK = Path("/usr/local/bin/barehub")


@dataclass(frozen=True)
class DirSpec:
    mode: int
    owner: str = "root"
    group: str = "root"
    owns_contents: bool = False  # the hub writes here: its files follow a change of --hub-user


def directories(paths: Paths, settings: Settings) -> dict[Path, DirSpec]:
    """Every directory of the base layout. A directory another user can write holds only that user's files:
    root's own files live in root's directories (the promise is a property of this table, not of names)."""
    hub, proxy = settings.hub_user, settings.proxy_user
    return {
        paths.prefix: DirSpec(0o755),
        paths.config_d: DirSpec(0o755),
        paths.config_d / "examples": DirSpec(0o755),
        paths.state: DirSpec(0o700, hub, primary_group(hub), owns_contents=True),
        paths.records: DirSpec(0o755),  # root's: the lock, what was applied, the known-good config
        # 0755: a non-root hub must reach dynamic/routes/; each file below guards itself (traefik.toml is 0640)
        paths.proxy: DirSpec(0o755),
        # root's, read by traefik: tls.toml (the site's key, inline, root:proxy 0640) and barehub.toml
        paths.traefik_dynamic_dir: DirSpec(0o751, "root", proxy),  # o+x: a --hub-user hub reaches routes/
        # the hub's routes (setgid: they belong to the proxy's group, so traefik can read them)
        paths.traefik_routes_dir: DirSpec(0o2750, hub, proxy, owns_contents=True),
        # traefik refuses an acme.json that is not 0600 (and then silently serves its default cert)
        paths.acme_dir: DirSpec(0o700, proxy, proxy, owns_contents=True),
    }


def render_examples(paths: Paths) -> dict[Path, FileSpec]:
    """The shipped drop-ins, copied to config_d/examples/ (not loaded: only top-level *.py are)."""
    source = shipped("jupyterhub_config.d")
    return {paths.config_d / "examples" / f.name: FileSpec(f.read_text())
            for f in sorted(source.iterdir()) if f.is_file()}


def ensure_user_exists(name: str) -> None:
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise BarehubError(f"user {name!r} does not exist", "create it first, or choose another --hub-user")


def ensure_system_user(name: str) -> bool:
    """Create the unprivileged system user traefik runs as. Returns whether it was created."""
    try:
        pwd.getpwnam(name)
        return False
    except KeyError:
        pass
    proc = subprocess.run(
        ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "barehub traefik proxy", name],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise BarehubError(f"could not create system user {name}: {proc.stderr.strip()}",
                           "create it yourself (useradd --system) and run the installer again")
    return True


def make_directories(paths: Paths, settings: Settings, previous_hub_user: str) -> None:
    """Create the layout. In a directory that follows the hub user, only the files of the hub user before
    this run (the directory's owner until now, and the remembered --hub-user) change owner: an install run
    never gives away a file it did not make for the hub."""
    take_dynamic_dir_back(paths, settings, previous_hub_user)
    previous = {uid for uid in (uid_of(previous_hub_user),) if uid is not None}
    for path, spec in directories(paths, settings).items():
        before = ensure_dir(path, spec.mode, spec.owner, spec.group)
        if spec.owns_contents:
            uid, gid = uid_gid(spec.owner, spec.group)
            for given in chown_contents(path, uid, gid, from_uids=previous | {before}):
                log.info("gave %s to %s (the hub's files follow --hub-user)", given, spec.owner)


# what releases before routes/ kept in proxy/dynamic/ (the hub user's with --hub-user): the hub's rules, its
# staging directory, and root's two files
OLD_HUB_RULES = ("rules.yaml", "rules.toml")
OLD_STAGING = ".staging"
OLD_ROOT_FILES = ("tls.toml", "barehub.toml")


def take_dynamic_dir_back(paths: Paths, settings: Settings, previous_hub_user: str) -> None:
    """Convert the layout of releases before routes/, where proxy/dynamic/ was the hub user's, with root's
    tls.toml in it (with --hub-user she could rename it, and the next run chowned the key to her).

    dynamic/ becomes root's first, so the hub user can no longer add or rename anything there. Then root's
    own files stay where root put them (rewritten by this run), and any other file of root's goes (the hub
    user may have renamed one: it is never moved into her directory or given to her); the hub's rules move
    into routes/ (a rename: traefik serves the same routes throughout); whatever else the hub left (its
    staging directory, temp files) goes. Does nothing on a converted install."""
    dynamic, routes = paths.traefik_dynamic_dir, paths.traefik_routes_dir
    try:
        st = dynamic.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        return  # ensure_dir refuses it, naming it
    children = [child for child in dynamic.iterdir() if child != routes]
    old_layout = st.st_uid != 0 or any(child.name in (*OLD_HUB_RULES, OLD_STAGING) or child.lstat().st_uid != 0
                                       for child in children)
    if not old_layout:
        return
    ensure_dir(dynamic, 0o751, "root", settings.proxy_user)
    if routes.is_symlink() or routes.exists() and not routes.is_dir():
        routes.unlink()  # the hub user's, in what was her directory
    ensure_dir(routes, 0o2750, settings.hub_user, settings.proxy_user)
    hub_uids = {uid for uid in (uid_of(previous_hub_user), uid_of(settings.hub_user)) if uid is not None}
    children = [child for child in dynamic.iterdir() if child != routes]  # again: all she made until now
    roots_first = sorted(children, key=lambda child: (child.lstat().st_uid != 0, child.name))
    for child in roots_first:
        owner = child.lstat().st_uid
        if owner == 0 and child.name in OLD_ROOT_FILES:
            continue
        if child.name in OLD_HUB_RULES and owner in hub_uids and not os.path.lexists(routes / child.name):
            os.rename(child, routes / child.name)
            log.info("moved %s into %s (the hub's own directory)", child, routes)
            continue
        remove(child)
        log.info("removed %s (left in %s by the layout before routes/)", child, dynamic)
    if 0 not in hub_uids:  # a root file the hub user moved into what became routes/ (at any depth) is not hers
        for top, dirs, files in os.walk(routes, topdown=False):  # does not follow links
            for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
                child = Path(top) / name
                if child.lstat().st_uid == 0:
                    child.unlink()
                    log.info("removed %s (root's, in the hub's directory)", child)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)  # fd-based: never follows a link inside
    else:
        path.unlink()


def link_cli(paths: Paths, link: Path = CLI_LINK) -> None:
    """Put `barehub` on PATH, pointing into the env."""
    target = paths.env_bin / "barehub"
    if link.is_symlink() and link.resolve() == target.resolve():
        return
    tmp = link.with_name(f".{link.name}.tmp")
    try:
        link.parent.mkdir(parents=True, exist_ok=True)
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(target)
        tmp.replace(link)
    except OSError as e:
        raise BarehubError(f"cannot link {link} -> {target}: {e}",
                           f"make {link.parent} writable, or call {target} by its full path")
