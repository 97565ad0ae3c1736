"""`barehub install`: lay out the prefix, write secrets, proxy config and units, start, wait.

Converges: running it again changes only what differs, and restarts only units whose inputs changed
since they were last (re)started (PREFIX/records/applied.json), so a run after an interrupted or
refused one restarts what that run wrote but never applied.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from barehub import (__version__, certificates, hub_run, known_good, layout, migrations, postgres, proxy_config,
                     release_change, releases, secret_files, units)
from barehub.commands import add_prefix_argument, install_paths
from barehub.config_loading import KNOWN_GOOD
from barehub.fragment_check import FragmentProblems, check_and_record
from barehub.fsutil import FileSpec, atomic_write
from barehub.health import wait_for_ok
from barehub.installed import traefik_version
from barehub.base.paths import Paths
from barehub.settings import Settings, load_settings, render_settings
from barehub.base.errors import BarehubError
from barehub.base import install_settings
from barehub.base.current_env import switch_current_env
from barehub.base.install_lock import InstallLock
from barehub.base.machine import require_root
from barehub.base.ports import check_distinct_ports
from barehub.base.records import read_json_dict
from barehub.systemd import Systemctl, remove_unit_files

log = logging.getLogger("barehub")
PROXY_DEADLINE_S = 60


def add_parser(sub) -> None:
    p = sub.add_parser("install", help="install or converge barehub under a prefix (run by bootstrap.py)")
    add_prefix_argument(p, creates=True)
    install_settings.add_settings_arguments(p)
    p.set_defaults(run=run)


@dataclass
class Report:
    changed_files: list[Path] = field(default_factory=list)
    new_secrets: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    backup: Path | None = None
    url: str = ""
    health_seconds: float = 0.0


def render_all(paths: Paths, settings: Settings, tls_pem: tuple[str, str], traefik: str = "unknown") -> dict[str, dict[Path, FileSpec]]:
    """Every file the installer owns, grouped by the unit that must restart when one changes."""
    unit_files = units.render_units(paths, settings, traefik_version=traefik)
    unit_file = {path.name: {path: spec} for path, spec in unit_files.items()}
    proxy_files = proxy_config.render_proxy_config(paths, settings, *tls_pem)
    dynamic = {p: proxy_files.pop(p) for p in list(proxy_files) if p.parent == paths.traefik_dynamic_dir}
    cert_units = {p: s for name in units.CERT_UNITS for p, s in unit_file.get(name, {}).items()}
    return {
        units.PROXY_UNIT: {**proxy_files, **unit_file[units.PROXY_UNIT]},
        units.CERTS_PATH_UNIT: cert_units,
        units.HUB_UNIT: unit_file[units.HUB_UNIT],  # carries a digest of the settings the hub reads
        # no restart for these: traefik watches its dynamic directory; the sampler is a timer's oneshot
        "": {paths.settings_file: FileSpec(render_settings(settings), releases.RECORD_MODE),
             **{path: spec for name in units.USAGE_UNITS for path, spec in unit_file[name].items()},
             **dynamic, **layout.render_examples(paths)},
    }


def inputs_digest(files: dict[Path, FileSpec]) -> str:
    """What a unit runs with: restarting it is needed when this differs from what it was started with."""
    h = hashlib.sha256()
    for path in sorted(files):
        h.update(f"{path}\0{files[path].text}\0".encode())
    return h.hexdigest()[:16]


def checked_settings(paths: Paths, overrides: dict) -> tuple[Settings, tuple[str, str]]:
    """The settings of this run, and the site's certificate and key: all checked before anything changes."""
    settings = load_settings(paths).with_overrides(overrides)
    check_distinct_ports(settings.ports(), settings.https)
    layout.ensure_user_exists(settings.hub_user)
    install_settings.check_acme_contact(settings.acme_domains, settings.acme_email)
    check_database(settings)
    if not settings.tls_cert:
        return settings, ("", "")
    install_settings.check_tls_files(settings.tls_cert, settings.tls_key)
    return settings, (Path(settings.tls_cert).read_text(), Path(settings.tls_key).read_text())


def check_database(settings: Settings) -> None:
    """A PostgreSQL database (--db-url) the hub can read the password of and reach, as the hub user: else nothing
    changes, and a running hub keeps serving."""
    install_settings.check_db_settings(settings.db_url, settings.db_password_file)
    db = postgres.Database.of(settings)
    if db:
        if db.password_file:
            postgres.check_password_file(db.password_file, settings.hub_user)
        postgres.reach(db, "nothing was changed")


def install(paths: Paths, overrides: dict, systemctl: Systemctl) -> Report:
    require_root("barehub install")
    os.umask(0o022)  # what the installer creates is read by the hub, traefik and users' servers
    lock = InstallLock(paths).acquire()  # held until this process exits
    migrations.convert_older_install(paths, overrides)  # before anything reads a record
    remembered_hub_user = load_settings(paths).hub_user  # whose files in state/ follow a change of --hub-user
    settings, tls_pem = checked_settings(paths, overrides)
    report = Report(url=settings.public_url)
    previous = releases.read_release(paths, paths.release_file)
    if previous is None or previous.version == __version__:
        prepare_layout(paths, settings, remembered_hub_user, report)
        use_own_env(paths)
        converge(paths, settings, tls_pem, systemctl, report)
        return report
    release_change.preflight(paths, previous, systemctl)  # nothing has changed before this passes
    prepare_layout(paths, settings, remembered_hub_user, report)
    upgrade = release_change.begin(paths, previous)
    report.backup = upgrade.backup
    try:
        use_own_env(paths)
        # the old hub stops only once the new files are written and checked: it serves meanwhile
        converge(paths, settings, tls_pem, systemctl, report,
                 before_restart=lambda: release_change.migrate(paths, settings, systemctl, upgrade.backup))
    except Exception as e:
        raise release_change.roll_back(paths, upgrade, systemctl, lock, e) from e
    release_change.finish(paths)
    return report


def use_own_env(paths: Paths) -> None:
    """Point PREFIX/conda at the env this installer runs from (bootstrap.py builds it aside and runs it)."""
    own = Path(sys.prefix).resolve()
    if own.parent == paths.envs.resolve() and (not paths.env.exists() or paths.env.resolve() != own):
        switch_current_env(paths, own)


def converge(paths: Paths, settings: Settings, tls_pem: tuple[str, str], systemctl: Systemctl,
             report: Report, before_restart: Callable[[], None] | None = None) -> None:
    """Write what differs, restart what it changed, wait for the hub; then record the release.

    An upgrade stops the old hub and migrates the database in `before_restart`, once every file is written and
    the fragments are checked: the hub is down only for the stop, the migration and the new hub's start.
    Before, the stop came first, and /hub waited through writing and checking too: ~0.5 s here with no fragment
    (the slowest /hub answer through an upgrade: 8.4 s before, 8.1 s after, one run each); the check runs every
    fragment, LDAP or OIDC look-ups included, so a site's take longer."""
    desired = write_files(paths, settings, tls_pem, systemctl, report)
    restart_needed = units_to_restart(paths, desired)
    if units.HUB_UNIT in restart_needed or not systemctl.is_active(units.HUB_UNIT):
        refuse_broken_fragments(paths, systemctl)
    if before_restart:
        before_restart()
    hub_since = start_units(paths, settings, desired, restart_needed, systemctl, report)
    wait_for_hub(paths, settings, hub_since, systemctl, report)
    releases.write_release(paths, releases.Release(__version__, releases.current_env(paths)))


def prepare_layout(paths: Paths, settings: Settings, previous_hub_user: str, report: Report) -> None:
    if layout.ensure_system_user(settings.proxy_user):
        log.info("created system user %s for traefik", settings.proxy_user)
    migrations.take_dynamic_dir_back(paths, settings, previous_hub_user)  # once the upgrade's checks passed
    layout.make_directories(paths, settings, previous_hub_user)
    report.new_secrets = secret_files.ensure_all(paths, settings.hub_user)
    secret_files.ensure_private_file(paths.db_file, settings.hub_user)  # users' tokens and state live here
    if report.new_secrets:
        log.info("generated secrets: %s", ", ".join(report.new_secrets))


def write_files(paths: Paths, settings: Settings, tls_pem: tuple[str, str], systemctl: Systemctl,
                report: Report) -> dict[str, str]:
    """Write every rendered file that differs; returns each unit's inputs digest."""
    if not settings.tls_cert:
        tls_pem = certificates.default_certificate(paths)  # traefik always has one: see proxy_config.tls_config
        report.changed_files += remove_unit_files(systemctl, units.CERT_UNITS, units.DEFAULT_UNIT_DIR)
    examples_before = {p for p in (paths.config_d / "examples").glob("*") if p.is_file()}
    desired = {}
    for unit, files in render_all(paths, settings, tls_pem, traefik_version(paths)).items():
        changed = [path for path, spec in files.items() if atomic_write(path, spec)]
        report.changed_files += changed
        for path in changed:
            if path in examples_before:  # the site's own fragments are never touched; say what moved
                log.info("the shipped drop-in %s changed in this release: compare it with your copy in %s",
                         path.name, paths.config_d)
        if unit and files:
            desired[unit] = inputs_digest(files)
    for path in report.changed_files:
        log.info("wrote %s", path)
    layout.link_cli(paths)
    return desired


def read_applied(paths: Paths) -> dict:
    return read_json_dict(paths.applied_file)


def units_to_restart(paths: Paths, desired: dict[str, str]) -> list[str]:
    """Units whose inputs differ from those they were last (re)started with, and a hub that runs its
    known-good config (so that a fixed config is applied by the next run)."""
    applied = read_applied(paths)
    needed = [unit for unit, digest in desired.items() if applied.get(unit) != digest]
    run = hub_run.read_run(paths)
    if run and run.config == KNOWN_GOOD and units.HUB_UNIT not in needed:
        needed.append(units.HUB_UNIT)
    return needed


def record_applied(paths: Paths, unit: str, digest: str) -> None:
    applied = {**read_applied(paths), unit: digest}
    atomic_write(paths.applied_file, FileSpec(json.dumps(applied, indent=2, sort_keys=True) + "\n", 0o644))


def start_units(paths: Paths, settings: Settings, desired: dict[str, str], restart_needed: list[str],
                systemctl: Systemctl, report: Report) -> float | None:
    """Start or restart what needs it, proxy first. Returns when the hub was (re)started, if it was."""
    systemctl.daemon_reload()
    started = units.UNITS + ((units.CERTS_PATH_UNIT,) if settings.tls_cert else ()) + (units.USAGE_TIMER,)
    systemctl.enable(started)
    hub_since = None
    for unit in started:
        since = time.time()
        if not systemctl.is_active(unit):
            log.info("starting %s", unit)
            systemctl.start(unit)
        elif unit in restart_needed:
            log.info("restarting %s (what it runs with changed)", unit)
            systemctl.restart(unit)
        else:
            continue
        report.restarted.append(unit)
        if unit == units.HUB_UNIT:
            hub_since = since
        if unit in desired:
            record_applied(paths, unit, desired[unit])
    return hub_since


def wait_for_hub(paths: Paths, settings: Settings, hub_since: float | None, systemctl: Systemctl,
                 report: Report) -> None:
    """Until the hub answers through traefik; a hub (re)started now must serve the current fragments."""
    if hub_since is not None:
        log.info("waiting for the hub to answer through traefik")
        run, report.health_seconds = hub_run.wait_until_serving(paths, settings, hub_since, systemctl)
        known_good.promote(paths, run.digest, settings.hub_user)
    else:
        url = settings.local_url(f"{hub_run.base_url(paths)}hub/health")
        report.health_seconds = wait_for_ok(url, PROXY_DEADLINE_S, "the hub (through traefik)",
                                            f"see: journalctl -u {units.HUB_UNIT} -u {units.PROXY_UNIT} -n 80")


def refuse_broken_fragments(paths: Paths, systemctl: Systemctl) -> None:
    """The hub is about to (re)start: a bad fragment must not take it down, as with a reload."""
    try:
        count = check_and_record(paths, systemctl)
    except FragmentProblems as e:
        raise BarehubError(e.refusal("not (re)starting the hub"),
                           f"fix the file(s) in {paths.config_d} and run the installer again") from None
    log.info("config OK: %d fragment(s) checked", count)


def run(args: argparse.Namespace) -> int:
    overrides = install_settings.given_settings(args)
    report = install(install_paths(args), overrides, Systemctl())
    if report.restarted:
        log.info("(re)started: %s", ", ".join(report.restarted))
    if not report.changed_files and not report.restarted:
        log.info("nothing to change: the install is up to date")
    log.info("the hub answers through the proxy (%.1f s): %s", report.health_seconds, report.url)
    return 0
