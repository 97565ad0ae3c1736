"""Debian's PostgreSQL inside a booted test container, as a site's database server: a cluster of its own (initdb on the
container's /var), run as a unit there, a `jupyterhub` role with a password and a database it owns, and the password
file a site gives barehub (--db-password-file). tests/integration/test_postgres.py and bench/database.py use it."""
from __future__ import annotations

from testbed.web import wait_until

PG_BIN = "/usr/lib/postgresql/15/bin"  # Debian 12's PostgreSQL (tests/run installs it)
UNIT = "barehub-test-postgres"
DATA, SOCKET, PORT = "/var/lib/barehub-test-pg", "/run/barehub-test-pg", 25432
PASSWORD = "pg:Secret\\with-colon-%-and-backslash"  # what a passfile and a URL would each have to escape
PASSWORD_FILE = "/etc/barehub/db-password"
URL = f"postgresql://jupyterhub@127.0.0.1:{PORT}/jupyterhub"


def psql(box, sql: str, check: bool = True, database: str = "jupyterhub") -> str:
    """As the database's superuser, over its socket (peer authentication)."""
    return box.run(f"runuser -u postgres -- psql -h {SOCKET} -p {PORT} -d {database} -Atc \"{sql}\"",
                   check=check).stdout


def start(box) -> None:
    box.run(f"systemd-run --unit={UNIT} --property=User=postgres --property=RuntimeDirectory={SOCKET[5:]} "
            f"{PG_BIN}/postgres -D {DATA} -p {PORT} -k {SOCKET} -c listen_addresses=127.0.0.1")
    wait_until(lambda: psql(box, "select 1", check=False, database="postgres").strip() == "1", 30)


def stop(box) -> None:
    box.run(f"systemctl stop {UNIT}", check=False)


def create(box) -> None:
    """A fresh cluster, started, with the hub's role and database, and the password file (root's, 0600)."""
    box.run(f"rm -rf {DATA} && install -d -o postgres -m 0700 {DATA} && "
            f"runuser -u postgres -- {PG_BIN}/initdb -D {DATA} --auth-local=peer --auth-host=scram-sha-256")
    start(box)
    box.run(f"runuser -u postgres -- psql -h {SOCKET} -p {PORT} -d postgres -v ON_ERROR_STOP=1 -v pw='{PASSWORD}' -f -",
            input="create role jupyterhub login password :'pw';\ncreate database jupyterhub owner jupyterhub;\n")
    box.run(f"install -d -m 0755 /etc/barehub && install -m 0600 /dev/null {PASSWORD_FILE} && cat > {PASSWORD_FILE}",
            input=PASSWORD + "\n")
