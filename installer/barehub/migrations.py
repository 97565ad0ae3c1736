"""Every conversion of an older install's records and layout into the current ones.

Root's records (records/install.json, records/release.json) carry `"format": FORMAT` from this release on;
one without it is of format 1 (in records/, as earlier releases wrote it) or 0 (in state/, where releases
before records/ kept it). `convert_older_install` brings them to FORMAT, once, under the install lock and
before anything reads a record; it also converts what releases before envs/ left (PREFIX/conda a directory)
and what a bootstrap.py before 2026.11.0 did early (PREFIX/conda already on the new env). (The database's
own migration, by JupyterHub, is release_change.migrate.)

Two conversions cannot run that early, and are called where they must run:
- `take_dynamic_dir_back` (releases before proxy/dynamic/routes/): it takes proxy/dynamic/ from the older hub,
  which keeps running until the upgrade's checks pass (barehub.commands.install.prepare_layout);
- the hub's takeover of rules.toml (barehub.traefik_proxy.legacy_rules_file): the older hub writes that file
  until it stops, so only the new hub, at its first start, can take its routes over.
Going back to an older release converts the other way (barehub.release_change.give_*_back_to).
"""
from __future__ import annotations

import json
import logging
import os
import pwd
import shutil
import stat
from pathlib import Path

from barehub import __version__, releases
from barehub.base.current_env import switch_current_env
from barehub.base.errors import BarehubError
from barehub.base.install_settings import BY_NAME, flag_name
from barehub.base.paths import Paths
from barehub.base.records import FORMAT, legacy_record, open_no_follow
from barehub.fsutil import FileSpec, atomic_write, ensure_dir, uid_of
from barehub.settings import Settings

log = logging.getLogger("barehub")


def convert_older_install(paths: Paths, flags: dict) -> None:
    """Bring this install's records and layout to the current format (see the module docstring)."""
    for name in adopt_legacy_records(paths, flags):  # format 0 -> 1
        log.info("moved %s from %s to %s (root's records)", name, paths.state, paths.records)
    settings = read_record(paths.settings_file)
    if settings is not None and format_of(settings) < FORMAT:  # format 1 -> 2
        if "hub_sudo" not in settings and settings.get("hub_user", "root") != "root":
            settings["hub_sudo"] = True  # a --hub-user hub from before the flag ran sudo: it keeps doing so
        write_record(paths.settings_file, settings)
    release = read_record(paths.release_file)
    if release is not None and format_of(release) < FORMAT:
        write_record(paths.release_file, release)
    if paths.env.is_dir() and not paths.env.is_symlink():  # an env from before envs/ existed
        paths.envs.mkdir(mode=0o755, exist_ok=True)
        os.replace(paths.env, paths.env_of("unversioned"))
        paths.env.symlink_to(paths.env_of("unversioned").relative_to(paths.prefix))
        log.info("moved %s to %s", paths.env, paths.env_of("unversioned"))
    previous = releases.read_release(paths, paths.release_file)
    if previous is not None and previous.version != __version__:
        keep_running_env(paths, previous)  # a bootstrap.py before 2026.11.0 switched it early


def read_record(path: Path) -> dict | None:
    """A record of root's, or None if there is none or it is not a JSON object (load_settings says why)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def format_of(record: dict) -> int:
    """A record's format: 1 without the field (records/ before formats), and 1 for anything but a number, so
    that a damaged field means "convert it again", never "skip the conversions"."""
    value = record.get("format", 1)
    return value if type(value) is int else 1


def write_record(path: Path, data: dict) -> None:
    atomic_write(path, FileSpec(json.dumps({**data, "format": FORMAT}, indent=2, sort_keys=True) + "\n",
                                releases.RECORD_MODE))


# what root may take from a settings record the hub user could write: numbers that decide no user, file or trust
PLAIN_SETTINGS = ("http_port", "https_port", "hub_port", "proxy_api_port")


def adopt_legacy_records(paths: Paths, flags: dict) -> list[str]:
    """Move the settings and release records of an install made before records/ existed out of state/.

    state/ is the hub user's: with a `--hub-user` install, that user could have rewritten them. Root
    therefore takes from them nothing it cannot check: the hub user is the owner of state/ and the proxy
    user the owner of proxy/acme (both set by root), an env must be one of PREFIX/envs, and of the settings
    only the ports. Any other setting such a record holds (certificate and key files, trusted proxies, ACME,
    addresses) must be given again as a flag of this run (`flags`), or nothing is changed and the error names
    each one. Returns the names of the records adopted. Runs under the install lock, before anything reads a
    record.
    """
    adopted = []
    paths.records.mkdir(mode=0o755, exist_ok=True)
    state = paths.state.lstat() if paths.state.is_dir() and not paths.state.is_symlink() else None
    for record in (paths.settings_file, paths.release_file):
        legacy = legacy_record(paths, record)
        if state is None or record.exists() or not legacy.is_file() or legacy.is_symlink():
            continue
        data = read_legacy(legacy)
        if record == paths.settings_file and state.st_uid != 0:
            data = checkable_settings(paths, data, state.st_uid, flags, legacy)
        if record == paths.release_file:  # what a release record says, and nothing else the hub user added
            data = {name: data[name] for name in ("version", "env") if isinstance(data.get(name), str)}
        if record == paths.release_file and not releases.env_in_prefix(paths, str(data.get("env", ""))):
            data.pop("env", None)
        if record == paths.release_file and state.st_uid != 0 and data.get("env"):
            data["version"] = installed_release(paths, data["env"]) or data.get("version")
        atomic_write(record, FileSpec(json.dumps(data, indent=2, sort_keys=True) + "\n", releases.RECORD_MODE))
        legacy.unlink()
        adopted.append(record.name)
    return adopted


def installed_release(paths: Paths, env: str) -> str | None:
    """The barehub release an env holds, from its package metadata (root built the env): not from a record the
    hub user could write, whose version decides whether an upgrade backs up and migrates the database."""
    for info in sorted((paths.prefix / env).glob("lib/python3*/site-packages/barehub-*.dist-info/METADATA")):
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("Version: "):
                return line.split(": ", 1)[1].strip()
    return None


def read_legacy(path: Path) -> dict:
    """A record in state/, read only from a regular file there (never through a link, never a FIFO)."""
    try:
        with os.fdopen(open_no_follow(path)) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def checkable_settings(paths: Paths, data: dict, hub_uid: int, flags: dict, legacy: Path) -> dict:
    """What root takes from a --hub-user install's settings record (see adopt_legacy_records)."""
    defaults = Settings()
    given = {name for name, value in flags.items() if value is not None and value is not False}
    unchecked = {name: value for name, value in data.items()
                 if name not in (*PLAIN_SETTINGS, "hub_user", "proxy_user") and hasattr(defaults, name)
                 and not is_default(getattr(defaults, name), value)}
    https_off = "no_https" in given
    missing = {name: value for name, value in unchecked.items()
               if name not in given and not (https_off and name in BY_NAME["no_https"].replaces)}
    if missing:
        owner = pwd.getpwuid(hub_uid).pw_name
        listed = "; ".join(f"{name} = {value!r} ({flag_name(name)})" for name, value in sorted(missing.items()))
        raise BarehubError(f"{legacy} (from a release before records/) is {owner}'s, the hub user's, who could "
                           f"have changed it; root takes only its ports, and not: {listed}",
                           "check each value and give it again as the flag named, in this run (nothing was changed)",
                           exit_code=2)
    kept = {name: data[name] for name in PLAIN_SETTINGS if type(data.get(name)) is int and 0 < data[name] < 65536}
    kept["hub_user"] = pwd.getpwuid(hub_uid).pw_name
    acme = paths.acme_dir
    if acme.is_dir() and not acme.is_symlink() and acme.lstat().st_uid != 0:
        kept["proxy_user"] = pwd.getpwuid(acme.lstat().st_uid).pw_name
    return kept


def is_default(default, value) -> bool:
    return list(value or []) == list(default) if isinstance(default, tuple) else value == default


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


def keep_running_env(paths: Paths, previous: releases.Release) -> None:
    """PREFIX/conda stays on the running release's env until the upgrade's backup is taken."""
    running = paths.prefix / previous.env
    if running.is_dir() and (not paths.env.exists() or paths.env.resolve() != running.resolve()):
        switch_current_env(paths, running)
