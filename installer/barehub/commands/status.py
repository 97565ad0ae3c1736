"""`barehub status`: units, versions, URL, running servers, and fragments on disk that the check refused."""
from __future__ import annotations

import argparse
import json
import os
import pwd
import subprocess
import time
from pathlib import Path

from barehub import __version__, certificates, fragment_check, hub_run, releases, units
from barehub.hub_api import HubAPI
from barehub.installed import package_version, traefik_version
from barehub.commands import add_prefix_argument, install_paths
from barehub.base.paths import Paths
from barehub.base.errors import BarehubError
from barehub.base.install_lock import InstallLock
from barehub.base.records import read_json_dict
from barehub.settings import load_settings
from barehub.systemd import Systemctl
from barehub.terminal import printable


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="show units, versions, URL and running servers")
    add_prefix_argument(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(run=run)


def running_servers(paths: Paths, hub_port: int, base_url: str) -> list[str] | str:
    """Every active server (running, starting or stopping) of every user, "user" or "user/server", asked of the
    hub's API with barehub's service token."""
    try:
        return [f"{user}/{name}" if name else user for user, name in HubAPI(paths, hub_port, base_url).active_servers()]
    except BarehubError as e:
        return e.message


def config_repo_state(config_d: Path) -> str:
    """The plan suggests keeping jupyterhub_config.d in git: say whether it is, and whether it is committed."""
    if not (config_d / ".git").exists():
        return "not a git repository (suggested: git init in it, and commit your fragments)"
    try:
        out = subprocess.run(["git", "-C", str(config_d), "status", "--porcelain"], capture_output=True, text=True)
    except FileNotFoundError:
        return "a git repository (git is not installed here to check it)"
    changes = [line for line in out.stdout.splitlines() if line.strip()]
    return f"git: {len(changes)} uncommitted change(s)" if changes else "git: clean"


def hub_config_state(run: hub_run.Run | None) -> dict:
    """Which fragments the hub runs: the current ones, or the known-good ones after the current failed."""
    if run is None:
        return {"config": "unknown (the hub has not recorded a start)"}
    state = {"config": run.config, "base_url": run.base_url, "since": time.strftime(
        "%Y-%m-%d %H:%M:%S", time.localtime(run.started))}
    if run.failed:
        state["failed"] = run.failed.get("error", "")
    elif run.config == hub_run.KNOWN_GOOD:  # sent back by a reload: it started, but did not become healthy
        state["failed"] = "the hub with them did not answer /hub/health through traefik (see the journal)"
    return state


def fragment_check_state(refusal: fragment_check.Refusal | None) -> dict | None:
    """The last refusal of the fragments by the check (a reload's, an install's, `barehub check`'s), until a
    check passes: whether the files on disk are still the refused set, and each problem's file and line."""
    if refusal is None:
        return None
    return {"on_disk": refusal.current, "recheck": fragment_check.RECHECK,
            "checked": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(refusal.checked)),
            "problems": [{**fragment_check.problem_fields(p), "text": str(p)} for p in refusal.problems]}


def collect(paths: Paths, systemctl: Systemctl) -> dict:
    settings = load_settings(paths)
    release = releases.read_release(paths, paths.release_file)
    run = hub_run.read_run(paths)
    return {
        "prefix": str(paths.prefix),
        "release": release.version if release else "not installed yet",
        "config_dir": {"path": str(paths.config_d), "state": config_repo_state(paths.config_d)},
        "url": settings.public_url,
        "certificate": certificates.describe(paths, settings),
        "units": {u: {"active": systemctl.is_active(u), "enabled": systemctl.is_enabled(u)} for u in units.UNITS},
        "versions": {"barehub": __version__, "jupyterhub": package_version(paths, "jupyterhub"),
                     "jupyterhub-traefik-proxy": package_version(paths, "jupyterhub-traefik-proxy"),
                     "traefik": traefik_version(paths)},
        "hub": hub_config_state(run),
        "fragment_check": fragment_check_state(fragment_check.read_refusal(paths)),
        "running_servers": running_servers(paths, settings.hub_port, run.base_url if run else "/"),
        "server_units": server_units(systemctl),
        "upgrade": upgrade_state(paths, systemctl),
        "database": database_state(paths, settings),
    }


def database_state(paths: Paths, settings) -> dict:
    """Where the hub's database is, as the settings say (never a password; `barehub check` connects to it)."""
    if settings.db_url:
        return {"kind": "postgresql", "url": settings.db_url, "password_file": settings.db_password_file or None}
    return {"kind": "sqlite", "path": str(paths.db_file)}


def upgrade_state(paths: Paths, systemctl: Systemctl) -> dict | None:
    """An upgrade running now (its unit, or a run holding the install lock), or one that was interrupted:
    records/upgrade.json is there (removed when an upgrade ends, rolled back or not) and nothing runs it.

    The way out of an interrupted one is `barehub rollback --backup NAME`, the command that is always safe: it
    needs only what is on this machine (the old release's env and the backup, both kept), and it brings back the
    old release with the database as the backup took it, just before the hub stopped, whichever step the upgrade
    was in (the env link switched or not, the database migrated or half, the new hub started or not, a rollback
    under way). `barehub upgrade TO` would finish instead, but may need the package index for the new release,
    and runs again the steps that may have been the ones that failed."""
    record = read_json_dict(paths.upgrade_file)
    in_unit = systemctl.is_active(paths.upgrade_unit)
    holder = None if in_unit else InstallLock(paths).holder()
    if not record and not in_unit:
        return None
    release = releases.read_release(paths, paths.release_file)
    state = {"from": str(record.get("from") or (release.version if release else "?")),
             "to": str(record.get("to") or "a new release"), "backup": str(record.get("backup") or "")}
    if in_unit or holder:
        description = systemctl.show(paths.upgrade_unit, "Description").get("Description", "") if in_unit else ""
        return {**state, "running": True, "by": f"unit {paths.upgrade_unit}" if in_unit else holder,
                "what": "rollback" if description.startswith("barehub rollback") else "upgrade",
                "follow": f"journalctl -fu {paths.upgrade_unit}" if in_unit else ""}
    backup_kept = bool(state["backup"]) and (paths.backups / state["backup"]).is_dir()
    return {**state, "running": False, "hub_running": systemctl.is_active(units.HUB_UNIT),
            "env_release": env_release(paths),
            "end": f"barehub rollback --backup {state['backup']}" if backup_kept else f"barehub upgrade {state['to']}"}


def env_release(paths: Paths) -> str:
    """The release whose env PREFIX/conda links to now (envs/<release>)."""
    try:
        return Path(os.readlink(paths.env)).name
    except OSError:
        return "none (no env link)"


def server_units(systemctl: Systemctl) -> list[dict]:
    """Local user servers as systemd sees them (every unit of the users' slice, one per server): unit, user,
    state, memory use and limit."""
    return [{"unit": u["unit"], "user": user_name(u.get("User", "")), "state": u.get("ActiveState", ""),
             "memory": human_bytes(u.get("MemoryCurrent")), "memory_max": human_bytes(u.get("MemoryMax"))}
            for u in systemctl.loaded_units(units.USER_UNITS_GLOB) if u.get("Slice") == units.USERS_SLICE]


def user_name(user: str) -> str:
    """systemd-run --uid=N (how the spawner starts servers) shows the uid; people know the name."""
    try:
        return pwd.getpwuid(int(user)).pw_name if user.isdigit() else user
    except KeyError:
        return user


def human_bytes(value: str | None) -> str:
    """systemd's byte counts as people read them ("infinity" and unknown stay words)."""
    if value == "infinity" or (value and value.isdigit() and int(value) >= 2**63 - 1):
        return "no limit"  # systemd shows an unset limit as infinity, or as the largest 64-bit number
    if not value or not value.isdigit():
        return value or "unknown"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return value


def format_status(status: dict) -> str:
    lines = [f"barehub {status['release']} at {status['prefix']}  URL: {status['url']}",
             f"  config: {status['config_dir']['path']} ({status['config_dir']['state']})"]
    for unit, st in status["units"].items():
        lines.append(f"  {unit:28} {'active' if st['active'] else 'INACTIVE'}, "
                     f"{'enabled' if st['enabled'] else 'not enabled'}")
    lines.append("  versions: " + ", ".join(f"{k} {v}" for k, v in status["versions"].items()))
    db = status.get("database")
    if db and db["kind"] == "postgresql":
        lines.append(f"  database: PostgreSQL, {db['url']}" + (f" (password from {db['password_file']})"
                                                                if db.get("password_file") else "")
                     + "; `barehub check` connects to it")
    elif db:
        lines.append(f"  database: SQLite, {db['path']}")
    cert = status["certificate"]
    if cert["https"]:
        line = f"  HTTPS ({cert['source']}): "
        if "subject" in cert:
            line += f"certificate {cert['subject']}, issued by {cert['issuer']}, expires {cert['expires']}"
        lines.append(line + (f"  PROBLEM: {cert['error']}" if "error" in cert else ""))
    else:
        lines.append("  HTTPS: off")
    hub = status["hub"]
    line = f"  hub config: {hub['config']}" + (f", base_url {hub['base_url']}, since {hub['since']}" if "since" in hub else "")
    lines.append(line)
    if "failed" in hub:
        lines.append(f"  PROBLEM: the current fragments failed, so the hub serves the known-good ones: {hub['failed']}")
    refused = status.get("fragment_check")
    if refused and refused["on_disk"]:
        lines.append(f"  PROBLEM: the fragments on disk failed the check at {refused['checked']} and are not applied "
                     f"(check again: {refused['recheck']}):")
        lines += [f"    {p['text']}" for p in refused["problems"]]
    elif refused:
        lines.append(f"  fragments: changed since the check refused them at {refused['checked']}, not checked since "
                     f"(check them: {refused['recheck']})")
    lines += upgrade_lines(status.get("upgrade"), status["prefix"])
    servers = status["running_servers"]
    if isinstance(servers, str):
        lines.append(f"  running servers: unknown ({servers})")
    else:
        lines.append(f"  running servers: {len(servers)}" + (f" ({', '.join(servers)})" if servers else ""))
    for u in status["server_units"]:
        lines.append(f"    {u['unit']:40} user {u['user'] or '?'}, {u['state']}, "
                     f"memory {u['memory']} (limit: {u['memory_max']})")
    return "\n".join(lines)


def upgrade_lines(upgrade: dict | None, prefix: str) -> list[str]:
    if not upgrade:
        return []
    if upgrade["running"]:
        follow = f"; follow it: {upgrade['follow']}" if upgrade["follow"] else ""
        if upgrade.get("what") == "rollback":
            return [f"  rollback: running ({upgrade['by']}){follow}"]
        return [f"  upgrade: {upgrade['from']} -> {upgrade['to']} is running ({upgrade['by']}){follow}"]
    hub = "runs" if upgrade["hub_running"] else "is NOT running"
    backup = f", its backup {upgrade['backup']}" if upgrade["backup"] else ""
    lines = [f"  PROBLEM: the upgrade {upgrade['from']} -> {upgrade['to']} was interrupted{backup}: the hub {hub}, "
             f"{prefix}/conda links to release {upgrade['env_release']}'s env",
             f"    end it: {upgrade['end']}"]
    if upgrade["end"].startswith("barehub rollback"):
        lines.append(f"    (release {upgrade['from']} back with the database of just before the upgrade, from what is on "
                     f"this machine; then `barehub upgrade {upgrade['to']}` again)")
    return lines


def healthy(status: dict) -> bool:
    """What status exits 0 for: every unit active, the certificate fine, the hub on the fragments on disk,
    and those passed the check, and no upgrade left interrupted (one that runs does not count by itself)."""
    upgrade = status.get("upgrade") or {}
    return (all(st["active"] for st in status["units"].values()) and "error" not in status["certificate"]
            and "failed" not in status["hub"] and not (status.get("fragment_check") or {}).get("on_disk")
            and not (upgrade and not upgrade["running"]))


def run(args: argparse.Namespace) -> int:
    status = collect(install_paths(args), Systemctl())
    print(json.dumps(status, indent=2) if args.json else printable(format_status(status)))  # JSON escapes them itself
    return 0 if healthy(status) else 3
