"""The base layout under the prefix: which directories exist, who owns them, and their modes."""
from __future__ import annotations

import pwd
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
        paths.usage_dir: DirSpec(0o700),  # root's: the local servers' usage (barehub.usage_ledger)
        paths.usage_dir / "running": DirSpec(0o700),
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
    previous = {uid for uid in (uid_of(previous_hub_user),) if uid is not None}
    for path, spec in directories(paths, settings).items():
        before = ensure_dir(path, spec.mode, spec.owner, spec.group)
        if spec.owns_contents:
            uid, gid = uid_gid(spec.owner, spec.group)
            for given in chown_contents(path, uid, gid, from_uids=previous | {before}):
                log.info("gave %s to %s (the hub's files follow --hub-user)", given, spec.owner)


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
