"""The base layout under the prefix: which directories exist, who owns them, and their modes."""
from __future__ import annotations

import pwd
import subprocess
from dataclasses import dataclass
from pathlib import Path

from barehub.shared import BarehubError
from barehub.fsutil import FileSpec, chown_contents, ensure_dir, primary_group, uid_gid
from barehub.paths import Paths, shipped
from barehub.settings import Settings

CLI_LINK = Path("/usr/local/bin/barehub")


@dataclass(frozen=True)
class DirSpec:
    mode: int
    owner: str = "root"
    group: str = "root"
    owns_contents: bool = False  # the hub writes here: its files follow a change of --hub-user
    root_files: tuple[str, ...] = ()  # ... except these, which root writes and the owner must not read


def directories(paths: Paths, settings: Settings) -> dict[Path, DirSpec]:
    hub, proxy = settings.hub_user, settings.proxy_user
    return {
        paths.prefix: DirSpec(0o755),
        paths.config_d: DirSpec(0o755),
        paths.config_d / "examples": DirSpec(0o755),
        paths.state: DirSpec(0o700, hub, primary_group(hub), owns_contents=True),
        paths.records: DirSpec(0o755),  # root's: the lock, what was applied, the known-good config
        # 0755: a non-root hub must reach dynamic/; each file below guards itself (traefik.toml is 0640)
        paths.proxy: DirSpec(0o755),
        # setgid: the routes the hub writes here belong to the proxy's group, so traefik can read them
        # tls.toml (the site's key, inline) stays root:proxy 0640, never the hub user's
        paths.traefik_dynamic_dir: DirSpec(0o2750, hub, proxy, owns_contents=True,
                                           root_files=(paths.traefik_tls.name, paths.traefik_middlewares.name)),
        # the hub's rules file before its rename into rules.yaml (setgid: the proxy's group, which traefik
        # needs to read the directory, as it reads subdirectories of dynamic/ too)
        paths.traefik_staging_dir: DirSpec(0o2750, hub, proxy, owns_contents=True),
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


def make_directories(paths: Paths, settings: Settings) -> None:
    for path, spec in directories(paths, settings).items():
        ensure_dir(path, spec.mode, spec.owner, spec.group)
        if spec.owns_contents:
            chown_contents(path, *uid_gid(spec.owner, spec.group), keep=spec.root_files)


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
