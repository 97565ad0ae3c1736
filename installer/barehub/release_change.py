"""Moving an install to another release as one transaction (the installer runs from the NEW release's env).

Before anything changes (`preflight`): the fragments are checked with the new release's JupyterHub (this
process), and there must be room for the backup. Then (`begin`) the database and the records are backed
up, once per upgrade: a re-run of an interrupted upgrade reuses the backup that holds the pre-upgrade
database instead of backing up a half-migrated one (records/upgrade.json says which). Only then does the
env link switch, the hub stop and JupyterHub migrate the database (`migrate`). If that or anything after
it fails (writing files, starting, the health wait), `roll_back` puts the backup's database and records
back, returns the link to the old env and has the old release's own installer converge the units and
start the old hub. User servers keep running throughout (each is its own systemd unit); those of a release
from before server units were the hub's children, and the migration's stop ends them (README says so).

Before this, bootstrap.py switched the link before the installer ran: a fragment the new release refused
left the link on the new env with the old schema, and the next hub restart died.
"""
from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

from barehub import __version__, postgres, process_tree, releases, units
from barehub.config_loading import read_set
from barehub.fragment_check import FragmentProblems, check_fragments
from barehub.fsutil import FileSpec, atomic_write, read_private
from barehub.base.paths import Paths
from barehub.package_files import base_config_file
from barehub.settings import Settings, load_settings
from barehub.base.errors import BarehubError
from barehub.base.install_lock import InstallLock
from barehub.base.current_env import switch_current_env
from barehub.base.machine import check_systemd_version
from barehub.base.records import read_json_dict
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")
BACKUP_MARGIN = 16 * 2**20  # bytes beyond the database's size that must stay free
OLD_INSTALLER_TIMEOUT_S = 600


@dataclass(frozen=True)
class Upgrade:
    previous: releases.Release
    backup: Path


def preflight(paths: Paths, previous: releases.Release, systemctl: Systemctl) -> None:
    """Everything that can refuse the upgrade, checked while nothing has changed yet."""
    check_systemd_version(systemctl.run("--version").stdout)  # the old release's bootstrap did not ask
    try:
        check_fragments(paths, systemctl)
    except FragmentProblems as e:
        raise BarehubError(f"release {__version__} refuses this install's config, so nothing was changed "
                           f"(release {previous.version} keeps running):\n" + e.refusal("not upgrading"),
                           f"fix the file(s) in {paths.config_d}, then run the upgrade again") from None
    check_backup_space(paths, check_database_backup(paths))


def check_database_backup(paths: Paths) -> int | None:
    """A PostgreSQL database (the one before this run's flags) must be reachable, and pg_dump and pg_restore of its
    server's version at hand: returns its size. None for SQLite."""
    db = postgres.Database.of(load_settings(paths))
    if db is None:
        return None
    server = postgres.reach(db, "nothing was changed")
    for tool in ("pg_dump", "pg_restore"):
        postgres.client_tool(tool, server.major)
    return server.size


def check_backup_space(paths: Paths, size: int | None = None) -> None:
    if size is None:
        size = paths.db_file.stat().st_size if paths.db_file.is_file() else 0
    free = shutil.disk_usage(paths.prefix).free
    if free < size + BACKUP_MARGIN:
        raise BarehubError(f"not enough space in {paths.prefix} for the backup of the database: "
                           f"{(size + BACKUP_MARGIN) // 2**20} MiB needed, {free // 2**20} MiB free; nothing was changed",
                           f"free some space (old backups are in {paths.backups}), then run the upgrade again")


def begin(paths: Paths, previous: releases.Release) -> Upgrade:
    """The backup of this upgrade: taken now, or the one an interrupted run of the same upgrade took."""
    record = read_json_dict(paths.upgrade_file)
    kept = paths.backups / str(record.get("backup", ""))
    if (record.get("from"), record.get("to")) == (previous.version, __version__) and record.get("backup") \
            and kept.is_dir():
        log.info("resuming the upgrade %s -> %s with its backup %s", previous.version, __version__, kept)
        return Upgrade(previous, kept)
    backup = releases.backup(paths, previous)
    record = {"from": previous.version, "to": __version__, "backup": backup.name}
    atomic_write(paths.upgrade_file, FileSpec(json.dumps(record, indent=2) + "\n", releases.RECORD_MODE))
    log.info("release %s -> %s: backed up the database and settings to %s", previous.version, __version__, backup)
    return Upgrade(previous, backup)


def migrate(paths: Paths, settings: Settings, systemctl: Systemctl, backup: Path) -> None:
    """Stop the hub and migrate its database to this release's JupyterHub, unless its schema is that already.

    Stopped with its whole cgroup: the old unit may have KillMode=process, and the user servers left in
    it by a release before server units would otherwise outlive the upgrade unknown to the new hub; and what the
    hub started is ended by parentage too (barehub.process_tree says why)."""
    current = schema_is_current(paths, settings, backup)  # (looked up while the old hub still serves)
    old_hub = process_tree.tree_of(systemctl.main_pid(units.HUB_UNIT))
    systemctl.stop_all(units.HUB_UNIT)
    process_tree.end_left_over(old_hub, f"the stop of {units.HUB_UNIT}")
    if current:
        log.info("the database's schema is JupyterHub %s's already: nothing to migrate", jupyterhub_version())
        return
    cmd = [str(paths.env_bin / "jupyterhub"), "upgrade-db", "--config", str(base_config_file())]
    if settings.hub_user != "root":
        cmd = ["runuser", "-u", settings.hub_user, "--", *cmd]
    db = postgres.Database.of(settings)  # JupyterHub's alembic connects by URL alone: the password in a PGPASSFILE
    with postgres.passfile(db.password() if db else None, settings.hub_user) as pgpass:
        proc = subprocess.run(cmd, cwd=paths.state, capture_output=True, text=True,
                              env={**os.environ, "BAREHUB_PREFIX": str(paths.prefix),  # it runs `alembic` from PATH
                                   "PATH": f"{paths.env_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}", **pgpass})
    if proc.returncode != 0:
        raise BarehubError(f"the database migration to {__version__} failed:\n{proc.stderr.strip()[-2000:]}")
    log.info("database migrated for JupyterHub %s", jupyterhub_version())


def schema_is_current(paths: Paths, settings: Settings, backup: Path) -> bool:
    """Whether the database's schema is this release's JupyterHub's already, so that `jupyterhub upgrade-db` can be
    left out: it is a whole JupyterHub start while the hub is down (~2 s here, more on a busy login node), for
    nothing when the release keeps JupyterHub's schema, as most do. Read from this upgrade's backup of SQLite's
    file (root's own copy, taken before anything changed): alembic's revision there is this JupyterHub's head.
    Not known, so migrated as before: a PostgreSQL database (its dump is not read), a fragment that names
    `db_url` (the hub may use another database), a copy without a revision or that cannot be read."""
    copy = backup / paths.db_file.name
    if settings.db_url or not copy.is_file() or any(b"db_url" in text for text in read_set(paths.config_d).values()):
        return False
    try:
        db = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            found = {row[0] for row in db.execute("select version_num from alembic_version")}
        finally:
            db.close()
        return found == {jupyterhub_schema_head()}
    except Exception:  # (not known: migrated, the way that is always right)
        return False


def jupyterhub_schema_head() -> str:
    """This env's JupyterHub's latest database revision (alembic's head of its migrations)."""
    import jupyterhub
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(Path(jupyterhub.__file__).parent / "alembic")).get_current_head()


def jupyterhub_version() -> str:
    from importlib.metadata import version

    return version("jupyterhub")


def finish(paths: Paths) -> None:
    paths.upgrade_file.unlink(missing_ok=True)


def roll_back(paths: Paths, upgrade: Upgrade, systemctl: Systemctl, lock: InstallLock,
              error: BaseException) -> BarehubError:
    """Bring the previous release back with the backup's database; returns the error to raise."""
    cause = error.message if isinstance(error, BarehubError) else f"{type(error).__name__}: {error}"
    old = upgrade.previous
    log.error("the upgrade to %s failed: %s", __version__, cause)
    log.error("rolling back to release %s with the database of %s", old.version, upgrade.backup.name)
    try:
        systemctl.stop(units.HUB_UNIT)
        stop_servers_unknown_to(paths, old, systemctl)
        give_routes_back_to(paths, old)
        give_layout_back_to(paths, old)
        releases.restore(paths, upgrade.backup)
        switch_current_env(paths, paths.prefix / old.env)
        systemctl.reset_failed(units.HUB_UNIT)  # the new hub's starts and restarts count towards the start limit
        converge_with_installer_of(paths, old, lock)
    except Exception as e:  # noqa: BLE001 - whatever it was, the admin must know the rollback did not finish
        reason = e.message if isinstance(e, BarehubError) else f"{type(e).__name__}: {e}"
        return BarehubError(f"the upgrade to {__version__} failed ({cause}), and so did rolling back: {reason}",
                            f"run: barehub rollback --backup {upgrade.backup.name}")
    finish(paths)
    return BarehubError(f"the upgrade to {__version__} failed: {cause}\n"
                        f"rolled back: release {old.version} serves again, with its database",
                        "fix the cause, then run the upgrade again")


def release_ships(paths: Paths, release: releases.Release, package_path: str) -> bool:
    """Whether `release`'s env (still in PREFIX/envs) has `package_path` in its site-packages."""
    return any((paths.prefix / release.env).glob(f"lib/python3*/site-packages/{package_path}"))


def stop_servers_unknown_to(paths: Paths, release: releases.Release, systemctl: Systemctl) -> bool:
    """Before going back to a release whose servers were the hub's children (no jupyterhub-systemdspawner
    in its env): stop the server units, which its hub cannot see and would leave running unreachable."""
    if release_ships(paths, release, "systemdspawner"):
        return False
    log.warning("release %s cannot see user servers as units: stopping them (users start them again)",
                release.version)
    systemctl.run("stop", units.USERS_SLICE, check=False)
    return True


def give_routes_back_to(paths: Paths, release: releases.Release) -> bool:
    """Before going back to a release that kept its routes and their bookkeeping in one rules.toml (no
    barehub/route_table.py in its env): write them there, so that its hub finds every route and traefik
    serves the same ones throughout (both files hold the same routers for a moment: traefik keeps one)."""
    if release_ships(paths, release, "barehub/route_table.py") or not paths.proxy_routes.exists():
        return False
    import toml

    rules = json.loads(read_private(paths.traefik_rules)) if os.path.lexists(paths.traefik_rules) else {}
    records = json.loads(read_private(paths.proxy_routes)).get("routes", {})
    owner = paths.traefik_routes_dir.lstat()
    atomic_write(paths.traefik_legacy_rules, FileSpec(toml.dumps({**rules, "jupyterhub": {"routes": records}}),
                                                      0o640, pwd.getpwuid(owner.st_uid).pw_name,
                                                      grp.getgrgid(owner.st_gid).gr_name))
    paths.traefik_rules.unlink(missing_ok=True)
    paths.proxy_routes.unlink(missing_ok=True)
    log.info("release %s keeps its routes in %s: %d routes written there", release.version,
             paths.traefik_legacy_rules.name, len(records))
    return True


def release_has_routes_dir(paths: Paths, release: releases.Release) -> bool:
    """Whether `release` keeps the hub's rules in proxy/dynamic/routes/ (its layout names the directory)."""
    layouts = ("shared.py", "base/paths.py")  # where releases up to 2026.11.0 kept the layout, and where it is now
    return any("traefik_routes_dir" in layout.read_text(errors="replace") for name in layouts
               for layout in (paths.prefix / release.env).glob(f"lib/python3*/site-packages/barehub/{name}"))


def give_layout_back_to(paths: Paths, release: releases.Release) -> bool:
    """Before going back to a release that kept the hub's rules directly in proxy/dynamic/ (the hub user's
    then): move them there (root's directory until that release's installer gives it to the hub user), so
    that its hub finds them and traefik serves the same routes throughout, and routes/ goes (traefik would
    read its stale rules first, ahead of the old hub's)."""
    routes = paths.traefik_routes_dir
    if release_has_routes_dir(paths, release) or not routes.is_dir() or routes.is_symlink():
        return False
    for name in ("rules.yaml", "rules.toml"):  # regular files only: a link she left there stays in routes/, and goes
        if (routes / name).is_file() and not (routes / name).is_symlink():
            os.rename(routes / name, paths.traefik_dynamic_dir / name)
    shutil.rmtree(routes)
    log.info("release %s keeps its routes in %s: moved them there", release.version, paths.traefik_dynamic_dir)
    log.warning("release %s gives proxy/dynamic/ (with root's tls.toml) to the hub user again: upgrade again soon",
                release.version)
    return True


def converge_with_installer_of(paths: Paths, release: releases.Release, lock: InstallLock) -> None:
    """Run the installer of `release` (from its env, still in PREFIX/envs) under this run's lock."""
    python = paths.prefix / release.env / "bin" / "python"
    returncode = lock.run_installer(python, paths.prefix, timeout=OLD_INSTALLER_TIMEOUT_S)
    if returncode != 0:
        raise BarehubError(f"the installer of release {release.version} exited {returncode}")
