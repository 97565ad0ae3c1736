"""Checking the hub's config without side effects: no database, no secrets written, no proxy contact.

`jupyterhub --show-config` is not usable for this: it initializes the hub (DB, cookie secret).
Here the config is only *loaded*, the way the hub loads it, and every `c.Section.option` is checked
against the traits of the class the hub would configure with it.
"""
from __future__ import annotations

import difflib
import os
import re
import traceback
from urllib.parse import urlparse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional

from traitlets import TraitError
from traitlets.config import Config, Configurable, LazyConfigValue
from traitlets.config.loader import PyFileConfigLoader

from barehub import postgres
from barehub.config_loading import fragment_files
from barehub.base.paths import Paths
from barehub.package_files import base_config_file
from barehub.settings import load_settings
from barehub.base.install_settings import flag_name
from barehub.base.ports import port_owner


@dataclass(frozen=True)
class Problem:
    file: Optional[Path] = None
    line: Optional[int] = None
    message: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.file and self.line else str(self.file or "config")
        return f"{where}: {self.message}"


def load_config(paths: Paths) -> Config:
    """The hub's full config (base + fragments), loaded as `jupyterhub -f` would load it."""
    os.environ["BAREHUB_PREFIX"] = str(paths.prefix)
    base = base_config_file()
    return PyFileConfigLoader(base.name, path=str(base.parent)).load_config()


def problem_from_exception(exc: BaseException, fragments: list[Path]) -> Problem:
    """Name the fragment file and line where loading failed."""
    names = {str(p) for p in fragments}
    if isinstance(exc, SyntaxError) and exc.filename in names:
        return Problem(Path(exc.filename), exc.lineno, f"SyntaxError: {exc.msg}")
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename in names:
            return Problem(Path(frame.filename), frame.lineno, f"{type(exc).__name__}: {exc}")
    return Problem(None, None, f"{type(exc).__name__}: {exc}")


def configurable_classes(config: Config) -> tuple[dict[str, type], list[type]]:
    """All configurable classes by name, and the classes the hub will instantiate."""
    from jupyterhub.app import JupyterHub

    hub_traits = JupyterHub.class_traits(config=True)
    chosen: list[type] = [JupyterHub]
    for option in ("authenticator_class", "spawner_class", "proxy_class"):
        value = config.JupyterHub.get(option, hub_traits[option].default_value)
        try:
            chosen.append(hub_traits[option].validate(None, value))
        except Exception:  # reported with its file:line by check_config, as a bad value
            continue
    known: dict[str, type] = {}

    def add(cls: type) -> None:
        for klass in cls.mro():
            if isinstance(klass, type) and issubclass(klass, Configurable) and klass.__name__ not in known:
                known[klass.__name__] = klass
                for sub in klass.__subclasses__():
                    add(sub)

    from barehub.hub_config import Barehub

    for cls in [*chosen, *JupyterHub(config=Config()).classes, Barehub]:
        add(cls)
    return known, chosen


def options_of(section: type, chosen: Iterable[type]) -> dict:
    """Config traits that `c.<section>.x` can set: the section's own, plus those of any chosen
    subclass (traitlets hands a base section's options to the subclass instance)."""
    traits = dict(section.class_traits(config=True))
    for cls in chosen:
        if issubclass(cls, section):
            traits.update(cls.class_traits(config=True))
    return traits


def check_value(trait, value) -> Optional[str]:
    if isinstance(value, LazyConfigValue):
        return None
    try:
        trait.validate(None, value)
    except TraitError as e:
        return str(e).split("\n")[0].replace(" of None instance", "")
    except Exception:  # a validator that needs a live instance: not checkable statically
        return None
    return None


def locate(section: str, key: str, fragments: list[Path]) -> tuple[Optional[Path], Optional[int]]:
    """The fragment line that sets c.<section>.<key> last (later fragments win)."""
    pattern = re.compile(rf"\b{re.escape(section)}\s*\.\s*{re.escape(key)}\b")
    for path in reversed(fragments):
        lines = path.read_text(errors="replace").splitlines()
        for number in range(len(lines), 0, -1):
            if pattern.search(lines[number - 1]):
                return path, number
    return None, None


def suggestion(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def check_config(config: Config, fragments: list[Path]) -> list[Problem]:
    known, chosen = configurable_classes(config)
    problems: list[Problem] = []
    for section_name in sorted(config):
        section = config[section_name]
        if not isinstance(section, Config):
            continue
        if section_name not in known:
            file, line = locate(section_name, "", fragments)
            problems.append(Problem(file, line, f"c.{section_name} is not a configurable class that is installed"
                                    f"{suggestion(section_name, known)}"))
            continue
        traits = options_of(known[section_name], chosen)
        for key, value in section.items():
            file, line = locate(section_name, key, fragments)
            if key not in traits:
                problems.append(Problem(file, line, f"c.{section_name}.{key} is not an option of {section_name}"
                                        f"{suggestion(key, traits)}"))
                continue
            error = check_value(traits[key], value)
            if error:
                problems.append(Problem(file, line, f"c.{section_name}.{key}: {error}"))
    return problems


def validate(paths: Paths, hub_pids: tuple[int, ...] = ()) -> tuple[list[Path], list[Problem]]:
    """Load and check the hub's config. Returns the fragments read and the problems found.

    `hub_pids`: the running hub, which may hold the ports the config asks for.
    """
    fragments = fragment_files(paths.config_d)
    try:
        config = load_config(paths)
    except BaseException as e:  # anything a fragment raises, sys.exit() included, is a problem to report
        if isinstance(e, KeyboardInterrupt):
            raise
        return fragments, [problem_from_exception(e, fragments)]
    problems = check_config(config, fragments)
    problems += check_authenticator(config, fragments, problems)
    problems += check_hub_rules(config, fragments)
    settings = load_settings(paths)
    problems += check_ports(config, fragments, settings, hub_pids)
    problems += check_database(config, fragments, paths, settings)
    return fragments, sorted(problems, key=lambda p: (str(p.file), p.line or 0))


def check_authenticator(config: Config, fragments: list[Path], found: list[Problem]) -> list[Problem]:
    """The authenticator made from the config as the hub makes it, so that its own validators run: checking
    each value alone missed that oauthenticator 17 refuses allowed_groups without manage_groups (the shipped
    Keycloak drop-in passed `barehub check`, and the hub did not start). An authenticator's constructor only
    sets traits; the network, the database and PAM are used at login."""
    if found:  # a bad value is already named with its line, the authenticator class among them
        return []
    from jupyterhub.app import JupyterHub

    trait = JupyterHub.class_traits(config=True)["authenticator_class"]
    cls = trait.validate(None, config.JupyterHub.get("authenticator_class", trait.default_value))
    try:
        cls(config=config)
    except Exception as e:  # noqa: BLE001 (whatever the hub would die of at start)
        file, line = locate("JupyterHub", "authenticator_class", fragments)
        return [Problem(file, line, f"{cls.__name__} refuses this config: {type(e).__name__}: {e}")]
    return []


# ---------------------------------------------------------------- JupyterHub's own rules, without side effects

ROLE_KEYS = {"name", "description", "scopes", "users", "services", "groups"}


def check_hub_rules(config: Config, fragments: list[Path]) -> list[Problem]:
    """What the hub would only find at start: malformed service and role specs, unknown scopes.

    Uses JupyterHub's own checks (role names, scopes, service fields), the parts that need no database.
    """
    from jupyterhub.roles import _validate_role_name
    from jupyterhub.scopes import _check_scopes_exist
    from jupyterhub.services.service import Service

    problems: list[Problem] = []
    services = config.JupyterHub.get("services", [])
    service_file, service_line = locate("JupyterHub", "services", fragments)
    fields = set(Service.class_trait_names(input=True))
    names: list[str] = []
    for spec in services:
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec.get("name"):
            problems.append(Problem(service_file, service_line, f"c.JupyterHub.services: an entry without a name: {spec!r}"))
            continue
        names.append(spec["name"])
        unknown = set(spec) - fields
        if unknown:
            problems.append(Problem(service_file, service_line, f"c.JupyterHub.services: service {spec['name']!r} "
                                    f"has no field {sorted(unknown)[0]!r}{suggestion(sorted(unknown)[0], fields)}"))
    for name in {n for n in names if names.count(n) > 1}:
        problems.append(Problem(service_file, service_line, f"c.JupyterHub.services: {name!r} is defined twice"))

    role_file, role_line = locate("JupyterHub", "load_roles", fragments)
    role_names: list[str] = []
    for role in config.JupyterHub.get("load_roles", []):
        where = dict(file=role_file, line=role_line)
        if not isinstance(role, dict) or not isinstance(role.get("name"), str):
            problems.append(Problem(message=f"c.JupyterHub.load_roles: a role without a name: {role!r}", **where))
            continue
        label = f"c.JupyterHub.load_roles: role {role['name']!r}"
        role_names.append(role["name"])
        try:
            _validate_role_name(role["name"])
            _check_scopes_exist(role.get("scopes", []), who_for=f"role {role['name']}")
        except (ValueError, KeyError) as e:
            problems.append(Problem(message=f"{label}: {str(e).strip(chr(34)).splitlines()[0]}", **where))
        unknown = set(role) - ROLE_KEYS
        if unknown:
            problems.append(Problem(message=f"{label} has no key {sorted(unknown)[0]!r}"
                                    f"{suggestion(sorted(unknown)[0], ROLE_KEYS)}", **where))
        for service in set(role.get("services", [])) - set(names):
            problems.append(Problem(message=f"{label} names the service {service!r}, which is not in "
                                    "c.JupyterHub.services", **where))
    for name in {n for n in role_names if role_names.count(n) > 1}:
        problems.append(Problem(role_file, role_line, f"c.JupyterHub.load_roles: role {name!r} is defined twice"))
    return problems


def hub_port(config: Config) -> Optional[int]:
    url = config.JupyterHub.get("hub_bind_url")
    if url:
        return urlparse(url).port
    return config.JupyterHub.get("hub_port")


def check_ports(config: Config, fragments: list[Path], settings, hub_pids: tuple[int, ...] = ()) -> list[Problem]:
    """The hub's own port must differ from traefik's, and be free unless the running hub holds it."""
    port = hub_port(config)
    if not port or port == settings.hub_port:
        return []
    file, line = locate("JupyterHub", "hub_bind_url" if config.JupyterHub.get("hub_bind_url") else "hub_port",
                        fragments)
    taken = {name: value for name, value in settings.ports().items() if name != "hub_port"
             and (settings.https or name != "https_port")}
    for name, value in taken.items():
        if value == port:
            return [Problem(file, line, f"the hub's port {port} is also traefik's ({flag_name(name)})")]
    owner = port_owner(port, hub_pids)
    if owner:
        return [Problem(file, line, f"the hub's port {port} is already in use by {owner}")]
    return []


# What would take JupyterHub's engine to another database than its db_url names: create_engine's own connection
# makers, and connect arguments naming a place (libpq's and sqlite3's).
ENGINE_MAKERS = ("creator", "async_creator")
PLACE_ARGS = ("host", "hostaddr", "port", "dbname", "service", "database", "uri")


def check_database(config: Config, fragments: list[Path], paths: Paths, settings) -> list[Problem]:
    """The hub's database is the one --db-url names, or SQLite's file in state/ (barehub.postgres.hub_database_url):
    upgrades back up that one and rollbacks restore it. A fragment that takes the hub to another (its own
    c.JupyterHub.db_url, or db_kwargs that connect elsewhere) would have an upgrade migrate a database it never
    backed up, and a rollback start the old hub on the migrated schema, which JupyterHub refuses. Values are not
    quoted: a fragment's URL may hold a password."""
    kwargs = config.JupyterHub.get("db_kwargs")
    kwargs = kwargs if isinstance(kwargs, dict) else {}  # (a value of another type is check_config's to name)
    connect_args = kwargs.get("connect_args")
    connect_args = connect_args if isinstance(connect_args, dict) else {}
    moving = ([f"db_kwargs[{key!r}]" for key in ENGINE_MAKERS if key in kwargs]
              + [f"db_kwargs['connect_args'][{key!r}]" for key in PLACE_ARGS if key in connect_args])
    if config.JupyterHub.get("db_url") != postgres.hub_database_url(settings, paths.db_file):
        moving.insert(0, "db_url")
    if not moving:
        return []
    file, line = locate("JupyterHub", moving[0].split("[")[0], fragments)
    known = settings.db_url or f"without it, SQLite in {paths.db_file}"
    return [Problem(file, line, f"c.JupyterHub.{moving[0]}: the hub's database is set with --db-url, not in a "
                                f"fragment: upgrades back up and roll back that one ({known}). For PostgreSQL, remove "
                                "this line and run, with no reload in between: sudo python3 bootstrap.py --db-url "
                                "postgresql://USER@HOST/DATABASE --db-password-file FILE")]
