"""The hub's database in PostgreSQL (--db-url, --db-password-file): its password, reaching it, and the dump an
upgrade takes and a rollback restores.

The password lives in one file the site keeps (root's, 0600; 0640 with the hub user's group for a --hub-user hub),
never in the URL, a fragment, a rendered file, a record, a command line or a log. The hub reads that file itself at
each start and reload (barehub.hub_config.keep_db_password), so a rotated password needs a reload, nothing more;
the file sits outside what the hub unit's sandbox hides (ProtectHome=, PrivateTmp=). Programs that connect by URL
alone (JupyterHub's alembic migration, pg_dump, pg_restore) get it from a PGPASSFILE made for the one run.

Whatever connects runs as the hub user, as the hub does: the same role, the same pg_hba.conf line (a local hub may
use peer authentication and no password at all).

The driver is psycopg 3 with its binary wheel (libpq inside): SQLAlchemy 2's `postgresql+psycopg`, maintained, and
psycopg's own docs call the binary package fit for production, which psycopg2's do not say of psycopg2-binary.
"""
from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from barehub.as_user import run_as
from barehub.base.errors import BarehubError
from barehub.fsutil import primary_group, read_private

CONNECT_TIMEOUT_S = 5  # a database that does not answer is named within this (barehub check, install, reload)
STATEMENT_TIMEOUT_MS = 5000
DUMP_TIMEOUT_S = 1800
DUMP_NAME = "database.pgdump"  # pg_dump's custom format, in an upgrade's backup directory
# Where the sandboxed hub sees nothing of the host's (ProtectHome=yes, PrivateTmp=yes): a file there is refused.
HIDDEN_FROM_HUB = (Path("/home"), Path("/root"), Path("/run/user"), Path("/tmp"), Path("/var/tmp"))
FLAGS = "--db-url and --db-password-file"
# Where a server's own client programs are: Debian/Ubuntu's postgresql-client-N, the PGDG RPMs' postgresqlN
TOOL_PLACES = ("/usr/lib/postgresql/{major}/bin", "/usr/pgsql-{major}/bin")


@dataclass(frozen=True)
class Database:
    """The settings' PostgreSQL database: its URL (never with a password), the password file, the hub user."""

    url: str
    password_file: str
    hub_user: str

    @classmethod
    def of(cls, settings) -> Optional["Database"]:
        """The database of an install's settings, or None for SQLite."""
        return cls(settings.db_url, settings.db_password_file, settings.hub_user) if settings.db_url else None

    def password(self) -> Optional[str]:
        return read_password(Path(self.password_file)) if self.password_file else None


def sqlalchemy_url(url: str) -> str:
    """--db-url as JupyterHub's SQLAlchemy URL: psycopg 3, the driver in the env."""
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def hub_database_url(settings, sqlite_file: Path) -> str:
    """The hub's database as JupyterHub's db_url: --db-url's, or SQLite's file in state/ without it. Worked out here
    only: the hub's base config sets it, and `barehub check` refuses a fragment that sets another
    (barehub.validation.check_database), because upgrades back up and roll back this one."""
    return sqlalchemy_url(settings.db_url) if settings.db_url else f"sqlite:///{sqlite_file}"


# The passwords this process gives to engines that connect by URL alone: {(host, port, dbname, user): password}
ENGINE_PASSWORDS: dict = {}


def where(url: str) -> tuple:
    """A database as SQLAlchemy's psycopg dialect hands it to the driver: (host, port, dbname, user), from the
    dialect's own create_connect_args, so that a host or port given in the query (a unix socket's directory:
    postgresql://hub@/jupyterhub?host=/run/postgresql) is matched as the engine will see it."""
    from sqlalchemy.engine import make_url

    parsed = make_url(sqlalchemy_url(url))
    _, args = parsed.get_dialect()().create_connect_args(parsed)
    return tuple(args.get(key) for key in ("host", "port", "dbname", "user"))


def give_password_to_engines(url: str, password: str) -> None:
    """Every SQLAlchemy engine of this process that connects to `url` without a password gets this one (the hub
    reads it from the file at each start and reload). JupyterHub's own engine would take it as a connect argument,
    but it also makes engines from the URL alone: alembic's, which stamps a new database at the hub's first start
    (seen: "Failed to connect to db" on a fresh install). A password given some other way (a fragment's
    connect_args) wins."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    ENGINE_PASSWORDS[where(url)] = password
    if not event.contains(Engine, "do_connect", _add_password):
        event.listen(Engine, "do_connect", _add_password)


def _add_password(dialect, connection_record, cargs, cparams) -> None:
    if dialect.name == "postgresql" and "password" not in cparams:
        password = ENGINE_PASSWORDS.get(tuple(cparams.get(key) for key in ("host", "port", "dbname", "user")))
        if password is not None:
            cparams["password"] = password


def read_password(path: Path) -> str:
    """The password: the file's first line. Read without following a link (barehub.fsutil.read_private)."""
    try:
        text = read_private(path)
    except FileNotFoundError:
        raise BarehubError(f"the database password file {path} is missing", f"create it, or fix {FLAGS}") from None
    except PermissionError:
        raise BarehubError(f"cannot read the database password file {path} as {pwd.getpwuid(os.geteuid()).pw_name}",
                           "root's, 0600 (0640 with the hub user's group for a --hub-user hub)") from None
    password = text.split("\n", 1)[0].rstrip("\r")
    if not password:
        raise BarehubError(f"the database password file {path} is empty", "put the password on its first line")
    return password


def check_password_file(path_text: str, hub_user: str) -> None:
    """Root's check at install, before anything changes: the hub can read the file, and nobody else can."""
    path = Path(path_text)
    if not path.is_absolute():
        raise BarehubError(f"--db-password-file {path_text} is not an absolute path", "give the file's full path",
                           exit_code=2)
    hidden = [d for d in HIDDEN_FROM_HUB if d == path or d in path.parents]
    if hidden:
        raise BarehubError(f"--db-password-file {path}: the hub's sandbox does not see {hidden[0]} (ProtectHome=, "
                           "PrivateTmp=)", "keep it elsewhere, e.g. /etc/barehub/db-password", exit_code=2)
    read_password(path)  # as root: there, regular, one name, not empty
    st = path.stat()
    group = primary_group(hub_user)
    wanted = "root's, 0600" if hub_user == "root" else f"root:{group}, 0640 (the hub user {hub_user} reads it)"
    readers_ok = (st.st_mode & 0o077 == 0 if hub_user == "root"
                  else st.st_mode & 0o037 == 0 and st.st_mode & 0o040 and st.st_gid == pwd.getpwnam(hub_user).pw_gid)
    if st.st_uid != 0 or not readers_ok:
        raise BarehubError(f"--db-password-file {path} is {oct(st.st_mode & 0o777)} uid {st.st_uid} gid {st.st_gid}: "
                           f"it must be {wanted}",
                           f"chown root:{'root' if hub_user == 'root' else group} {path}; "
                           f"chmod {'0600' if hub_user == 'root' else '0640'} {path}", exit_code=2)


# ---------------------------------------------------------------- reaching it

@dataclass(frozen=True)
class Server:
    version_num: int  # server_version_num: 150010 for 15.10
    size: int  # bytes of the database

    @property
    def major(self) -> int:
        return self.version_num // 10000


def ask_server(url: str, password: Optional[str]) -> bytes:
    """Connect and `select 1`, bounded; the server's version and the database's size, or the error, as text.
    Runs as the hub user (barehub.as_user.run_as)."""
    import psycopg

    try:
        with psycopg.connect(url, password=password, connect_timeout=CONNECT_TIMEOUT_S,
                             options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}") as conn:
            conn.execute("select 1")
            size = conn.execute("select pg_database_size(current_database())").fetchone()[0]
            return f"ok {conn.info.server_version} {size}".encode()
    except psycopg.Error as e:
        return ("error " + " ".join(str(e).split())).encode()


def reach(db: Database, doing: str = "") -> Server:
    """The server, or a BarehubError naming the URL (never a password) and the flags; `doing` says what was not
    done because of it."""
    answer = run_as(db.hub_user, ask_server, db.url, db.password(), timeout=CONNECT_TIMEOUT_S * 3).decode()
    kind, _, rest = answer.partition(" ")
    if kind != "ok":
        raise BarehubError(f"cannot reach the hub's database {db.url} as {db.hub_user}: {rest}"
                           + (f"; {doing}" if doing else ""),
                           f"start the database server or fix {FLAGS} (then run: barehub check)")
    version, size = rest.split()
    return Server(int(version), int(size))


def check_reachable(settings, doing: str) -> Optional[Server]:
    """`barehub check`'s and a reload's look at the database, for root and the hub user (others cannot read the
    password): None for SQLite, or when this user cannot tell."""
    db = Database.of(settings)
    if db is None or os.geteuid() not in (0, pwd.getpwnam(db.hub_user).pw_uid):
        return None
    return reach(db, doing)


# ---------------------------------------------------------------- dump and restore

def tool_version(tool: str) -> int:
    """The major version of a client program (`pg_dump (PostgreSQL) 15.10 (Debian ...)` -> 15), 0 if unknown."""
    try:
        out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return 0
    match = re.search(r"\)\s+(\d+)", out)
    return int(match[1]) if match else 0


def client_tool(name: str, server_major: int) -> str:
    """pg_dump or pg_restore that can work with the server: its own major or a newer one (pg_dump refuses a newer
    server). The server's own version first, where Debian/Ubuntu (postgresql-client-NN) and the PGDG RPMs put it,
    then PATH (Debian's wrapper there picks the newest client installed)."""
    candidates = [f"{place.format(major=server_major)}/{name}" for place in TOOL_PLACES] + [shutil.which(name) or ""]
    found = []
    for tool in candidates:
        if tool and os.access(tool, os.X_OK):
            major = tool_version(tool)
            if major >= server_major:
                return tool
            found.append(f"{tool} is {major or 'of an unknown version'}")
    raise BarehubError(f"no {name} for the hub's PostgreSQL {server_major} server"
                       + (f" ({'; '.join(found)})" if found else ""),
                       f"install the PostgreSQL {server_major} client programs (Debian/Ubuntu: apt install "
                       f"postgresql-client-{server_major}; RHEL: dnf install postgresql{server_major}); nothing was "
                       "changed")


@contextlib.contextmanager
def passfile(password: Optional[str], owner: str) -> Iterator[dict]:
    """The environment that gives a program run as `owner` the password: PGPASSFILE, a 0600 file of its own in a
    private directory, removed afterwards (not PGPASSWORD: libpq's docs advise against it)."""
    if not password:
        yield {}
        return
    account = pwd.getpwnam(owner)
    directory = tempfile.mkdtemp(prefix="barehub-pgpass-")
    try:
        os.chown(directory, account.pw_uid, account.pw_gid)
        path = os.path.join(directory, "pgpass")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchown(f.fileno(), account.pw_uid, account.pw_gid)
            f.write("*:*:*:*:" + password.replace("\\", "\\\\").replace(":", "\\:") + "\n")
        yield {"PGPASSFILE": path}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run_client(db: Database, argv: list[str], stdin=None, stdout=None, timeout: float = DUMP_TIMEOUT_S) -> None:
    """A client program as the hub user with the password in a PGPASSFILE; a failure names the URL and says why."""
    account = pwd.getpwnam(db.hub_user)
    with passfile(db.password(), db.hub_user) as env:
        proc = subprocess.run(argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, timeout=timeout, cwd="/",
                              env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", **env},
                              user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    if proc.returncode != 0:
        raise BarehubError(f"{Path(argv[0]).name} of the hub's database {db.url} failed (exit {proc.returncode}): "
                           + proc.stderr.decode(errors="replace").strip()[-1500:])


def dump(db: Database, directory: Path) -> Path:
    """pg_dump's custom format of the database into `directory` (root's): DUMP_NAME, 0600, whole or not at all."""
    server = reach(db, "nothing was backed up")
    tool = client_tool("pg_dump", server.major)
    target, partial = directory / DUMP_NAME, directory / f".{DUMP_NAME}.partial"
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as out:
        run_client(db, [tool, "--format=custom", f"--dbname={db.url}"], stdout=out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)
    return target


def restore(db: Database, dump_file: Path) -> None:
    """The database as `dump_file` holds it: the tables the dump does not have (a newer release's) dropped, then
    pg_restore --clean in one transaction. The hub must be stopped."""
    server = reach(db, "the database was not restored")
    tool = client_tool("pg_restore", server.major)
    listing = subprocess.run([tool, "--list", str(dump_file)], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    kept = set(re.findall(r"^\d+; \d+ \d+ TABLE \S+ (\S+) ", listing, re.M))
    answer = run_as(db.hub_user, drop_tables_but, db.url, db.password(), sorted(kept)).decode()
    if answer.startswith("error"):
        raise BarehubError(f"cannot restore the hub's database {db.url}: {answer[6:]}")
    with open(dump_file, "rb") as archive:  # root's backup, read by root and piped in
        run_client(db, [tool, "--clean", "--if-exists", "--no-owner", "--single-transaction", "--exit-on-error",
                        f"--dbname={db.url}"], stdin=archive)


def drop_tables_but(url: str, password: Optional[str], kept: list[str]) -> bytes:
    """Drop the tables of the current schema that are not in `kept` (what a newer release's migration added).
    Runs as the hub user."""
    import psycopg
    from psycopg import sql

    try:
        with psycopg.connect(url, password=password, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            tables = [row[0] for row in conn.execute(
                "select tablename from pg_tables where schemaname = current_schema()")]
            for table in sorted(set(tables) - set(kept)):
                conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier(table)))
        return b"ok"
    except psycopg.Error as e:
        return ("error " + " ".join(str(e).split())).encode()
