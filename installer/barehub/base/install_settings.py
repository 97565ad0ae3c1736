"""The install settings, declared once as a table: their flags, checks, merging and the argv handed on.

One row per setting says everything the code needs to know about it: its flag, how argparse reads it, its
default, its help, how a given value is coerced, whether the hub reads it (a change restarts the hub) and
which other settings it replaces when given. bootstrap.py's parser, `barehub install`'s parser, the argv
bootstrap.py passes to the installer, the remembered record (`barehub.settings.Settings`), the overrides of a
run and the hub's digest all come from this table; README's flag list is checked against it.
"""
from __future__ import annotations

import argparse
from urllib.parse import parse_qs, urlsplit
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import BarehubError

LETSENCRYPT = "https://acme-v02.api.letsencrypt.org/directory"


def _names(values: Any) -> Tuple[str, ...]:
    """A repeated flag (or a remembered list): a tuple without empty items, so `--trusted-proxy ''` clears."""
    return tuple(v for v in values if v)


def _yes(value: Any) -> bool:
    """--hub-sudo yes|no, or a remembered boolean."""
    return value == "yes" if isinstance(value, str) else bool(value)


@dataclass(frozen=True)
class Setting:
    """One install setting (see the module docstring)."""

    name: str
    default: Any
    help: str
    type: type = str  # the field's type in the remembered record
    flag: Optional[str] = ""  # "" : --name-with-dashes; None: no flag (set by the installer alone)
    arg: Dict[str, Any] = field(default_factory=dict)  # how argparse reads the flag (type, metavar, action, ...)
    coerce: Optional[Callable[[Any], Any]] = None  # a given or remembered value -> the field's value
    hub_reads: bool = False  # the hub reads it: a change restarts the hub
    remembered: bool = True  # a field of the record; False: only a flag of this run (--no-https)
    bootstrap: bool = True  # also a flag of bootstrap.py, which hands it on to the installer
    replaces: Tuple[str, ...] = ()  # given (and true), these go back to their defaults
    port: str = ""  # "listens": one of the install's ports; "optional": a port, or 0 for off

    @property
    def flag_name(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def default_text(self) -> str:
        """The default as README and --help say it."""
        if self.type is bool:
            return "yes" if self.default else "no"
        return str(self.default) if self.default not in ("", ()) else "none"


# Order matters twice: it is the order of --help and of the argv handed on, and the hub's digest hashes
# the fields it reads in this order (changing it would restart every hub once).
SETTINGS: Tuple[Setting, ...] = (
    Setting("http_port", 80, "public HTTP port", int, arg=dict(type=int, metavar="PORT"), hub_reads=True,
            port="listens"),
    Setting("https_port", 443, "public HTTPS port when HTTPS is on", int, arg=dict(type=int, metavar="PORT"),
            port="listens"),
    Setting("hub_port", 8081, "loopback port of the hub itself; traefik routes to it", int,
            arg=dict(type=int, metavar="PORT"), hub_reads=True, bootstrap=False, port="listens"),
    Setting("proxy_api_port", 8099, "loopback port of traefik's API (behind basic auth)", int,
            arg=dict(type=int, metavar="PORT"), hub_reads=True, bootstrap=False, port="listens"),
    Setting("http_address", "", "address traefik's public ports listen on (default: all); 127.0.0.1 behind a "
            "site's own reverse proxy", arg=dict(metavar="ADDR")),
    Setting("trusted_proxies", (), "a reverse proxy in front of traefik whose X-Forwarded-* headers are trusted "
            "(repeat for more; others' are overwritten; '' clears them)", tuple, flag="--trusted-proxy",
            arg=dict(action="append", metavar="IP[/BITS]"), coerce=_names),
    Setting("hub_user", "root", "run the hub as this user instead of root", hub_reads=True,
            arg=dict(metavar="USER")),
    Setting("hub_sudo", False, "let a --hub-user hub run sudo, for sudo- and batch-based spawners (its sandbox "
            "then cannot filter system calls)", bool, arg=dict(choices=("yes", "no")), coerce=_yes),
    Setting("proxy_user", "barehub-proxy", "the system user traefik runs as", flag=None),
    Setting("acme_domains", (), "turn on HTTPS with a Let's Encrypt certificate for DOMAIN (repeat for more "
            "names)", tuple, flag="--letsencrypt-domain", arg=dict(action="append", metavar="DOMAIN"),
            coerce=_names, replaces=("tls_cert", "tls_key")),
    Setting("acme_email", "", "ACME account contact (needed with --letsencrypt-domain)",
            flag="--letsencrypt-email", arg=dict(metavar="EMAIL")),
    Setting("acme_server", LETSENCRYPT, "another ACME CA's directory URL (Let's Encrypt staging, smallstep, ...)",
            arg=dict(metavar="URL")),
    Setting("acme_ca_file", "", "root CA that signed the ACME server's own HTTPS certificate",
            arg=dict(metavar="PEM")),
    Setting("tls_cert", "", "turn on HTTPS with this certificate (chain) file instead", arg=dict(metavar="PEM"),
            replaces=("acme_domains",)),
    Setting("tls_key", "", "the private key of --tls-cert", arg=dict(metavar="PEM")),
    Setting("no_https", False, "turn HTTPS off again", bool, arg=dict(action="store_true", default=None),
            remembered=False, replaces=("acme_domains", "tls_cert", "tls_key")),
    Setting("metrics_port", 0, "serve traefik's Prometheus metrics on 127.0.0.1:PORT (0: off)", int,
            arg=dict(type=int, metavar="PORT"), port="optional"),
    # new hub fields change every hub's digest: one restart, which the upgrade that brings them does anyway (the
    # hub unit names the release)
    Setting("db_url", "", "keep the hub's database in PostgreSQL at this URL, without a password "
            "(postgresql://USER@HOST[:PORT]/DB[?sslmode=...]; '' for SQLite in state/)", arg=dict(metavar="URL"),
            hub_reads=True),
    Setting("db_password_file", "", "the file holding the --db-url user's password (root's, 0600; 0640 with the "
            "hub user's group for a --hub-user hub)", arg=dict(metavar="PATH"), hub_reads=True),
)
BY_NAME: Dict[str, Setting] = {s.name: s for s in SETTINGS}
RECORDED = tuple(s for s in SETTINGS if s.remembered)  # the fields of records/install.json
FLAGS = tuple(s for s in SETTINGS if s.flag is not None)  # every flag of `barehub install`
HUB_FIELDS = tuple(s.name for s in SETTINGS if s.hub_reads)
DEFAULT_PORTS = {s.name: s.default for s in SETTINGS if s.port == "listens"}


def flag_name(name: str) -> str:
    """The flag that sets `name` ("acme_domains" -> "--letsencrypt-domain"), as messages name it."""
    return BY_NAME[name].flag_name if name in BY_NAME else "--" + name.replace("_", "-")


def add_settings_arguments(p: argparse.ArgumentParser, bootstrap: bool = False) -> None:
    """The install settings flags, remembered by the installer and re-applied on later runs and upgrades:
    all of them for `barehub install`, those that bootstrap.py hands on for bootstrap.py."""
    g = p.add_argument_group("install settings (remembered)")
    for s in FLAGS:
        if s.bootstrap or not bootstrap:
            said = s.arg.get("action") == "store_true" or s.default in ("", ())
            default = "" if said else f" (default {s.default_text})"
            g.add_argument(s.flag_name, dest=s.name, help=s.help + default, **s.arg)


def check_settings_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What the flags alone can tell, reported as usage errors before anything else runs."""
    for s in FLAGS:
        port = getattr(args, s.name, None)
        if s.port == "listens" and port is not None and not 0 < port < 65536:
            p.error(f"{s.flag_name} {port} is not a TCP port")
        if s.port == "optional" and port is not None and not 0 <= port < 65536:
            p.error(f"{s.flag_name} {port} is not a TCP port (or 0 for off)")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_cert and args.acme_domains:
        p.error("choose one: --letsencrypt-domain (certificates from an ACME CA) or --tls-cert/--tls-key")
    if args.no_https and (args.tls_cert or args.acme_domains):
        p.error("--no-https contradicts --tls-cert/--letsencrypt-domain")
    problem = db_url_problem(args.db_url or "")
    if problem:
        p.error(problem)


DB_SCHEMES = ("postgresql", "postgres")


def db_url_problem(url: str) -> Optional[str]:
    """What is wrong with a --db-url, or None ('' is SQLite). A password in it is refused: the URL is remembered
    in records/install.json (world-readable), passed to pg_dump's command line and logged by JupyterHub."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme not in DB_SCHEMES:
        return (f"--db-url {url.split('://')[0]}://...: barehub keeps the hub's database in PostgreSQL "
                "(postgresql://USER@HOST[:PORT]/DATABASE) or SQLite (no --db-url)")
    if parts.password is not None or "password" in parse_qs(parts.query):
        return ("--db-url carries a password: give the URL without it, and the password in a file with "
                "--db-password-file PATH (root's, 0600)")
    if not parts.username:
        return "--db-url names no user: postgresql://USER@HOST[:PORT]/DATABASE"
    return None


def check_db_settings(db_url: str, db_password_file: str) -> None:
    """On the merged settings (flags over remembered ones), before anything changes."""
    problem = db_url_problem(db_url)
    if problem:
        raise BarehubError(problem, "see README: PostgreSQL as the hub's database", exit_code=2)
    if db_password_file and not db_url:
        raise BarehubError("--db-password-file without --db-url: the SQLite database needs no password",
                           "give --db-url too, or --db-password-file '' to forget the file", exit_code=2)


def given_settings(args: argparse.Namespace) -> Dict[str, Any]:
    """The settings flags of a parsed command line, None where one was not given."""
    return {s.name: getattr(args, s.name, None) for s in FLAGS}


def settings_argv(args: argparse.Namespace) -> List[str]:
    """The settings flags that were given, as arguments for `barehub install`."""
    argv: List[str] = []
    for name, value in given_settings(args).items():
        if value is None or value is False:
            continue
        if value is True:
            argv.append(flag_name(name))
        elif isinstance(value, list):
            for item in value:
                argv += [flag_name(name), str(item)]
        else:
            argv += [flag_name(name), str(value)]
    return argv


def coerced(name: str, value: Any) -> Any:
    coerce = BY_NAME[name].coerce
    return coerce(value) if coerce else value


def of_its_type(name: str, value: Any) -> Any:
    """A remembered value, if it is of its setting's type (a list for a repeated flag); else a clear error, not
    a traceback: the record may be an older release's, and one in state/ was the hub user's to write."""
    kind = BY_NAME[name].type
    if value is None:
        return BY_NAME[name].default
    fits = (isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value) if kind is tuple
            else type(value) is kind or (kind is bool and value in ("yes", "no")))
    if not fits:
        raise BarehubError(f"the remembered install setting {name} is {value!r}, not a {kind.__name__}",
                           "fix or remove the install's settings record (records/install.json, or state/install.json "
                           f"of a release before records/); give {flag_name(name)} again in this run", exit_code=2)
    return coerced(name, value)


def merge(remembered: Mapping[str, Any], given: Mapping[str, Any]) -> Dict[str, Any]:
    """Every recorded setting of a run: the flag given now beats the remembered value, which beats the
    default; a given setting resets those it `replaces` (a new certificate source, --no-https)."""
    values = {s.name: s.default for s in RECORDED}
    values.update({k: of_its_type(k, v) for k, v in remembered.items() if k in values})
    now = {k: coerced(k, v) for k, v in given.items() if k in BY_NAME and v is not None}
    values.update({k: v for k, v in now.items() if k in values})
    for s in SETTINGS:
        if s.replaces and now.get(s.name) and (not s.remembered or values[s.name]):
            values.update({other: BY_NAME[other].default for other in s.replaces})
    return values


def https_on(values: Mapping[str, Any]) -> bool:
    """HTTPS is on when the merged settings name a certificate source."""
    return bool(values.get("acme_domains") or values.get("tls_cert"))


def check_acme_contact(domains: Sequence[str], email: Optional[str]) -> None:
    """On the merged settings (flags over remembered ones): an ACME account needs a contact."""
    if domains and not email:
        raise BarehubError("--letsencrypt-domain needs --letsencrypt-email (the CA's contact for expiry notices)",
                           "add --letsencrypt-email ADDRESS", exit_code=2)


def check_tls_files(cert: str, key: str) -> None:
    """Readable PEM files, checked before anything is changed."""
    for path, marker, what in ((cert, "-----BEGIN CERTIFICATE-----", "certificate"),
                               (key, "PRIVATE KEY-----", "private key")):
        try:
            text = Path(path).read_text(errors="replace")  # binary garbage fails the PEM check below
        except OSError as e:
            raise BarehubError(f"cannot read the TLS {what} {path}: {e.strerror}",
                               f"give a readable PEM file with --tls-{'cert' if what == 'certificate' else 'key'}")
        if marker not in text:
            raise BarehubError(f"{path} is not a PEM {what}", f"it should contain {marker!r}")
