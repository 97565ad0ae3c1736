"""`barehub install`: lay out the prefix, write secrets, proxy config and units, start, wait.

Converges: running it again changes only what differs, and restarts only units whose inputs changed.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from barehub import __version__, bootstrap_flags, layout, proxy_config, releases, secret_files, units
from barehub.errors import BarehubError
from barehub.fsutil import FileSpec, atomic_write, primary_group
from barehub.health import wait_for_ok
from barehub.paths import Paths, base_config_file
from barehub.settings import Settings, load_settings, render_settings
from barehub.systemd import Systemctl
from barehub.validation import validate

log = logging.getLogger("barehub")
HEALTH_DEADLINE_S = 180


def add_parser(sub) -> None:
    p = sub.add_parser("install", help="install or converge barehub under a prefix (run by bootstrap.py)")
    p.add_argument("--prefix", type=Path, default=Path("/opt/barehub"))
    bootstrap_flags.load().add_settings_arguments(p)
    p.add_argument("--hub-port", type=int, help="loopback port of the hub itself (default 8081; remembered)")
    p.add_argument("--proxy-api-port", type=int, help="loopback port of traefik's API (default 8099; remembered)")
    p.set_defaults(run=run)


@dataclass
class Report:
    changed_files: list[Path] = field(default_factory=list)
    new_secrets: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    backup: Path | None = None
    url: str = ""
    health_seconds: float = 0.0


def render_all(paths: Paths, settings: Settings, tls_pem: tuple[str, str] = ("", "")) -> dict[str, dict[Path, FileSpec]]:
    """Every file the installer owns, grouped by the unit that must restart when one changes."""
    unit_files = units.render_units(paths, settings)
    unit_file = {path.name: {path: spec} for path, spec in unit_files.items()}
    hub_group = primary_group(settings.hub_user)
    proxy_files = proxy_config.render_proxy_config(paths, settings, *tls_pem)
    dynamic = {p: proxy_files.pop(p) for p in list(proxy_files) if p.parent == paths.traefik_dynamic_dir}
    cert_units = {p: s for name in units.CERT_UNITS for p, s in unit_file.get(name, {}).items()}
    return {
        units.PROXY_UNIT: {**proxy_files, **unit_file[units.PROXY_UNIT]},
        units.CERTS_PATH_UNIT: cert_units,
        units.HUB_UNIT: unit_file[units.HUB_UNIT],  # carries a digest of the settings the hub reads
        # no restart for these: traefik watches its dynamic directory
        "": {paths.settings_file: FileSpec(render_settings(settings), 0o600, settings.hub_user, hub_group),
             **dynamic, **layout.render_examples(paths)},
    }


def read_tls_files(settings: Settings) -> tuple[str, str]:
    """Check the HTTPS settings, and read the site's certificate and key, before anything is changed."""
    bootstrap = bootstrap_flags.load()
    try:
        bootstrap.check_acme_contact(settings.acme_domains, settings.acme_email)
        if settings.tls_cert:
            bootstrap.check_tls_files(settings.tls_cert, settings.tls_key)
    except bootstrap.BootstrapError as e:
        raise BarehubError(e.message, e.hint, e.exit_code)
    if not settings.tls_cert:
        return "", ""
    return Path(settings.tls_cert).read_text(), Path(settings.tls_key).read_text()


def install(paths: Paths, overrides: dict, systemctl: Systemctl) -> Report:
    if os.geteuid() != 0:
        raise BarehubError("barehub install must run as root", "run it with sudo")
    settings = load_settings(paths).with_overrides(overrides)
    layout.ensure_user_exists(settings.hub_user)
    tls_pem = read_tls_files(settings)
    report = Report(url=settings.public_url)

    if layout.ensure_system_user(settings.proxy_user):
        log.info("created system user %s for traefik", settings.proxy_user)
    layout.make_directories(paths, settings)
    report.new_secrets = secret_files.ensure_all(paths, settings.hub_user)
    secret_files.ensure_private_file(paths.db_file, settings.hub_user)  # users' tokens and state live here
    if report.new_secrets:
        log.info("generated secrets: %s", ", ".join(report.new_secrets))

    restart_needed = []
    if not settings.https and paths.traefik_tls.exists():
        paths.traefik_tls.unlink()  # traefik notices: its dynamic directory is watched
        report.changed_files.append(paths.traefik_tls)
    if not settings.tls_cert:
        remove_units(systemctl, units.CERT_UNITS, report)
    examples_before = {p for p in (paths.config_d / "examples").glob("*") if p.is_file()}
    for unit, files in render_all(paths, settings, tls_pem).items():
        changed = [path for path, spec in files.items() if atomic_write(path, spec)]
        report.changed_files += changed
        for path in changed:
            if path in examples_before:  # the site's own fragments are never touched; say what moved
                log.info("the shipped drop-in %s changed in this release: compare it with your copy in %s",
                         path.name, paths.config_d)
        if changed and unit:
            restart_needed.append(unit)
    for path in report.changed_files:
        log.info("wrote %s", path)
    layout.link_cli(paths)
    if units.HUB_UNIT in restart_needed or not systemctl.is_active(units.HUB_UNIT):
        refuse_broken_fragments(paths)

    previous = releases.read_release(paths.release_file)
    if previous and previous.version != __version__:
        upgrade_from(previous, paths, settings, systemctl, report)

    systemctl.daemon_reload()
    started = units.UNITS + ((units.CERTS_PATH_UNIT,) if settings.tls_cert else ())
    systemctl.enable(started)
    for unit in started:
        if not systemctl.is_active(unit):
            log.info("starting %s", unit)
            systemctl.start(unit)
            report.restarted.append(unit)
        elif unit in restart_needed:
            log.info("restarting %s (its configuration changed)", unit)
            systemctl.restart(unit)
            report.restarted.append(unit)

    health = (f"https://127.0.0.1:{settings.https_port}/hub/health" if settings.https
              else f"http://127.0.0.1:{settings.http_port}/hub/health")
    log.info("waiting for the hub to answer through traefik at %s", health)
    report.health_seconds = wait_for_ok(
        health, HEALTH_DEADLINE_S, "the hub (through traefik)",
        f"see: journalctl -u {units.HUB_UNIT} -u {units.PROXY_UNIT} -n 80",
        give_up=crash_loop_detector(systemctl),
    )
    releases.write_release(paths, releases.Release(__version__, releases.current_env(paths)), settings.hub_user)
    return report


def upgrade_from(previous: releases.Release, paths: Paths, settings: Settings, systemctl: Systemctl,
                 report: Report) -> None:
    """The release changed: back up, stop the hub, migrate its database. User servers keep running."""
    report.backup = releases.backup(paths, previous, settings.hub_user)
    log.info("release %s -> %s: backed up the database and settings to %s", previous.version, __version__,
             report.backup)
    systemctl.stop(units.HUB_UNIT)
    cmd = [str(paths.env_bin / "jupyterhub"), "upgrade-db", "--config", str(base_config_file())]
    if settings.hub_user != "root":
        cmd = ["runuser", "-u", settings.hub_user, "--", *cmd]
    proc = subprocess.run(cmd, cwd=paths.state, capture_output=True, text=True,
                          env={**os.environ, "BAREHUB_PREFIX": str(paths.prefix),  # it runs `alembic` from PATH
                               "PATH": f"{paths.env_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}"})
    if proc.returncode != 0:
        raise BarehubError(f"the database migration to {__version__} failed:\n{proc.stderr.strip()[-2000:]}",
                           f"the hub is stopped; `barehub rollback` restores {previous.version} and its database")
    log.info("database migrated for JupyterHub %s", jupyterhub_version())


def jupyterhub_version() -> str:
    from importlib.metadata import version

    return version("jupyterhub")


def refuse_broken_fragments(paths: Paths) -> None:
    """The hub is about to (re)start: a bad fragment must not take it down, as with a reload."""
    fragments, problems = validate(paths)
    if problems:
        raise BarehubError(
            "not (re)starting the hub: its config has problems:\n  " + "\n  ".join(map(str, problems)),
            f"fix the file(s) in {paths.config_d} and run the installer again",
        )
    log.info("config OK: %d fragment(s) checked", len(fragments))


def remove_units(systemctl: Systemctl, names: tuple[str, ...], report: Report,
                 unit_dir: Path = units.DEFAULT_UNIT_DIR) -> None:
    present = [name for name in names if (unit_dir / name).exists()]
    if present:
        systemctl.disable_now(present)
        for name in present:
            (unit_dir / name).unlink()
            report.changed_files.append(unit_dir / name)


def crash_loop_detector(systemctl: Systemctl, restarts: int = 3):
    """A give-up check for the health wait: a unit that restarted `restarts` times will not come up by itself."""
    def count(unit: str) -> int:
        return int(systemctl.show(unit, "NRestarts").get("NRestarts") or 0)

    baseline = {unit: count(unit) for unit in units.UNITS}

    def check() -> str | None:
        for unit in units.UNITS:
            if count(unit) - baseline[unit] >= restarts:
                return f"{unit} keeps failing and restarting; its last log lines:\n{systemctl.journal_tail(unit)}"
        return None

    return check


def run(args: argparse.Namespace) -> int:
    names = (*bootstrap_flags.load().SETTINGS_FLAGS, "hub_port", "proxy_api_port")
    overrides = {name: getattr(args, name) for name in names}
    report = install(Paths.from_prefix(args.prefix), overrides, Systemctl())
    if report.restarted:
        log.info("(re)started: %s", ", ".join(report.restarted))
    if not report.changed_files and not report.restarted:
        log.info("nothing to change: the install is up to date")
    log.info("the hub answers through the proxy (%.1f s): %s", report.health_seconds, report.url)
    return 0
