"""PostgreSQL as the hub's database: the flags, the config the hub gets, where the password may and may not go, and
how upgrades and rollbacks reach pg_dump and pg_restore. (A real PostgreSQL: tests/integration/test_postgres.py.)"""
import json
import os
import stat
from pathlib import Path

import pytest

from barehub import postgres, release_change, releases, units
from barehub.base import install_settings
from barehub.base.errors import BarehubError
from barehub.settings import Settings, render_settings
from barehub.validation import load_config, validate
from tests.unit.conftest import RecordingSystemctl

URL = "postgresql://jupyterhub@db.example.org:5433/jupyterhub?sslmode=require"
PASSWORD = "s3cret:pass\\word"
OLD = releases.Release("2026.10.0", "envs/2026.10.0")


@pytest.fixture
def password_file(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres, "HIDDEN_FROM_HUB", ())  # tmp_path is under /tmp, which the hub's sandbox hides
    path = tmp_path / "db-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


def remember(prefix, **values):
    prefix.settings_file.write_text(json.dumps(values))


@pytest.mark.parametrize("url, refusal", [
    ("postgresql://jupyterhub:pw@db/jupyterhub", "--db-url carries a password: .* --db-password-file PATH"),
    ("postgresql://jupyterhub@db/jupyterhub?password=pw", "--db-url carries a password"),
    ("mysql://jupyterhub@db/jupyterhub", "PostgreSQL .* or SQLite"),
    ("postgresql://db/jupyterhub", "names no user"),
])
def test_a_url_with_a_password_or_that_is_not_postgresql_is_refused_naming_the_flags(url, refusal):
    with pytest.raises(BarehubError, match=refusal):
        install_settings.check_db_settings(url, "")
    assert install_settings.db_url_problem(URL) is None and install_settings.db_url_problem("") is None


def test_the_flags_refuse_a_password_in_the_url_before_anything_runs(bootstrap, capsys):
    with pytest.raises(SystemExit):
        bootstrap.parse_args(["--db-url", "postgresql://hub:pw@db/hub"])
    assert "--db-password-file" in capsys.readouterr().err


def test_a_password_file_without_a_url_is_refused():
    with pytest.raises(BarehubError, match="--db-password-file without --db-url"):
        install_settings.check_db_settings("", "/etc/barehub/db-password")


def password_given(url: str, **engine_args):
    """The password an engine made from `url` hands the driver (None: none), as alembic makes one: the URL alone."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, **engine_args)
    given = {}

    def connect(*cargs, **cparams):
        given.update(cparams)
        raise ConnectionRefusedError("not connecting in a unit test")
    engine.dialect.connect = connect
    with pytest.raises(Exception):
        engine.connect()
    return given.get("password")


def test_every_engine_the_hub_makes_gets_the_password_which_is_never_in_the_url(prefix, password_file):
    remember(prefix, db_url=URL, db_password_file=str(password_file))
    c = load_config(prefix)
    assert c.JupyterHub.db_url == "postgresql+psycopg://jupyterhub@db.example.org:5433/jupyterhub?sslmode=require"
    assert PASSWORD not in c.JupyterHub.db_url and "db_kwargs" not in c.JupyterHub
    assert password_given(c.JupyterHub.db_url) == PASSWORD  # JupyterHub's engine, and alembic's at a first start
    assert password_given("postgresql+psycopg://jupyterhub@elsewhere.example.org/jupyterhub") is None
    assert password_given(c.JupyterHub.db_url, connect_args={"password": "a fragment's own"}) == "a fragment's own"


@pytest.mark.parametrize("url", ["postgresql://jupyterhub@/jupyterhub?host=/run/postgresql",
                                 "postgresql://jupyterhub@/jupyterhub?host=/run/postgresql&port=5433",
                                 "postgresql://jupyterhub@localhost/jupyterhub?port=5433"])
def test_a_url_with_the_host_or_port_in_its_query_gets_the_password_too(prefix, password_file, url, monkeypatch):
    """A unix socket's directory is given as ?host=, as libpq and SQLAlchemy document it."""
    monkeypatch.setattr(postgres, "ENGINE_PASSWORDS", {})
    remember(prefix, db_url=url, db_password_file=str(password_file))
    c = load_config(prefix)
    assert password_given(c.JupyterHub.db_url) == PASSWORD
    assert password_given("postgresql+psycopg://jupyterhub@/jupyterhub?host=/run/other") is None


def test_a_fragments_own_db_url_gets_no_password(prefix, password_file, monkeypatch):
    monkeypatch.setattr(postgres, "ENGINE_PASSWORDS", {})
    remember(prefix, db_url=URL, db_password_file=str(password_file))
    (prefix.config_d / "50-db.py").write_text("c.JupyterHub.db_url = 'postgresql+psycopg://hub@other/hub'\n")
    load_config(prefix)
    assert postgres.ENGINE_PASSWORDS == {}


def test_the_check_refuses_a_fragment_that_names_another_database_than_db_url(prefix, password_file):
    """An upgrade dumps --db-url's database: a fragment's other one would be migrated with no dump to go back to."""
    remember(prefix, db_url=URL, db_password_file=str(password_file))
    (prefix.config_d / "50-db.py").write_text("c.JupyterHub.db_url = 'postgresql+psycopg://hub@other/hub'\n")
    [problem] = validate(prefix)[1]
    assert str(problem).startswith(f"{prefix.config_d}/50-db.py:1: c.JupyterHub.db_url: ") and URL in str(problem)
    (prefix.config_d / "50-db.py").write_text(f"c.JupyterHub.db_url = {postgres.sqlalchemy_url(URL)!r}\n")
    assert validate(prefix)[1] == []  # the same database, spelled as the hub gets it


def test_the_password_is_in_no_rendered_file_and_no_record(prefix, password_file):
    settings = Settings(db_url=URL, db_password_file=str(password_file))
    rendered = [spec.text for spec in units.render_units(prefix, settings).values()] + [render_settings(settings)]
    assert not [text for text in rendered if PASSWORD in text]
    assert json.loads(render_settings(settings))["db_password_file"] == str(password_file)


def test_a_changed_url_or_password_file_restarts_the_hub():
    digests = {Settings().hub_digest(), Settings(db_url=URL).hub_digest(),
               Settings(db_url=URL, db_password_file="/etc/barehub/db-password").hub_digest()}
    assert len(digests) == 3


@pytest.mark.parametrize("mode, owner_ok", [(0o600, True), (0o400, True), (0o640, False), (0o604, False)])
def test_a_root_hubs_password_file_is_roots_alone(password_file, mode, owner_ok):
    password_file.chmod(mode)
    if owner_ok:
        postgres.check_password_file(str(password_file), "root")
    else:
        with pytest.raises(BarehubError, match="it must be root's, 0600"):
            postgres.check_password_file(str(password_file), "root")


def test_a_hub_users_password_file_is_readable_by_her_group_only(password_file):
    nobody_gid = postgres.pwd.getpwnam("nobody").pw_gid
    os.chown(password_file, 0, nobody_gid)
    password_file.chmod(0o640)
    postgres.check_password_file(str(password_file), "nobody")
    password_file.chmod(0o600)  # she could not read it
    with pytest.raises(BarehubError, match="0640 .the hub user nobody reads it") as refused:
        postgres.check_password_file(str(password_file), "nobody")
    assert "chmod 0640" in refused.value.hint


def test_a_password_file_the_sandboxed_hub_cannot_see_or_a_link_is_refused(tmp_path, password_file, monkeypatch):
    monkeypatch.setattr(postgres, "HIDDEN_FROM_HUB", (Path("/home"), Path("/root")))
    with pytest.raises(BarehubError, match="the hub's sandbox does not see /root"):
        postgres.check_password_file("/root/db-password", "root")
    link = tmp_path / "link"
    link.symlink_to(password_file)
    with pytest.raises(BarehubError, match="symbolic link"):
        postgres.check_password_file(str(link), "root")
    password_file.write_text("\n")
    with pytest.raises(BarehubError, match="is empty"):
        postgres.check_password_file(str(password_file), "root")


def test_the_passfile_holds_the_password_escaped_privately_and_only_for_the_run():
    with postgres.passfile(PASSWORD, "root") as env:
        path = Path(env["PGPASSFILE"])
        assert path.read_text() == "*:*:*:*:s3cret\\:pass\\\\word\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()
    with postgres.passfile(None, "root") as env:
        assert env == {}


def fake_tool(directory: Path, name: str, major: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tool = directory / name
    tool.write_text(f"#!/bin/sh\necho '{name} (PostgreSQL) {major}.3 (Debian {major}.3-1)'\n")
    tool.chmod(0o755)


def test_pg_dump_of_the_servers_major_is_taken_first_and_an_older_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(postgres, "TOOL_PLACES", (str(tmp_path / "lib/postgresql/{major}/bin"),))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    fake_tool(tmp_path / "bin", "pg_dump", 15)
    fake_tool(tmp_path / "lib/postgresql/17/bin", "pg_dump", 17)
    assert postgres.client_tool("pg_dump", 17) == str(tmp_path / "lib/postgresql/17/bin/pg_dump")
    assert postgres.client_tool("pg_dump", 14) == str(tmp_path / "bin/pg_dump")  # newer than the server: fine
    with pytest.raises(BarehubError, match=r"no pg_dump for the hub's PostgreSQL 16 server .*is 15") as refused:
        postgres.client_tool("pg_dump", 16)
    assert "postgresql-client-16" in refused.value.hint


@pytest.fixture
def on_postgres(prefix, password_file, monkeypatch):
    """An install on PostgreSQL, with barehub.postgres's reach, dump and restore recorded instead of run."""
    remember(prefix, db_url=URL, db_password_file=str(password_file))
    releases.write_release(prefix, OLD)
    calls = []
    monkeypatch.setattr(postgres, "reach", lambda db, doing="": calls.append(("reach", db)) or postgres.Server(150010, 10**6))
    monkeypatch.setattr(postgres, "client_tool", lambda name, major: calls.append((name, major)) or f"/usr/bin/{name}")

    def dump(db, directory):
        calls.append(("dump", db))
        (directory / postgres.DUMP_NAME).write_bytes(b"PGDMP")
    monkeypatch.setattr(postgres, "dump", dump)
    monkeypatch.setattr(postgres, "restore", lambda db, path: calls.append(("restore", db, path.name)))
    return calls


def test_an_upgrade_checks_the_database_and_its_tools_then_dumps_it_and_a_rollback_restores_it(prefix, on_postgres,
                                                                                               password_file):
    db = postgres.Database(URL, str(password_file), "root")
    release_change.check_backup_space(prefix, release_change.check_database_backup(prefix))
    assert on_postgres == [("reach", db), ("pg_dump", 15), ("pg_restore", 15)]
    upgrade = release_change.begin(prefix, OLD)
    assert on_postgres[-1] == ("dump", db) and (upgrade.backup / postgres.DUMP_NAME).exists()
    assert not (upgrade.backup / prefix.db_file.name).exists()  # the empty SQLite file is not what serves
    assert release_change.begin(prefix, OLD).backup == upgrade.backup and len(on_postgres) == 4  # a re-run reuses it
    remember(prefix, db_url="postgresql://other@elsewhere/hub")  # the upgrade changed the settings ...
    releases.restore(prefix, upgrade.backup)
    assert on_postgres[-1] == ("restore", db, postgres.DUMP_NAME)  # ... the backup's database is the one restored


def test_an_unreachable_database_refuses_the_upgrade_before_anything_changes(prefix, on_postgres, monkeypatch):
    def unreachable(db, doing=""):
        raise BarehubError(f"cannot reach the hub's database {db.url} as root: connection refused; {doing}")
    monkeypatch.setattr(postgres, "reach", unreachable)
    with pytest.raises(BarehubError, match="cannot reach .* nothing was changed"):
        release_change.preflight(prefix, OLD, RecordingSystemctl(answers={"--version": "systemd 252 (252.1)"}))
    assert releases.list_backups(prefix) == [] and not prefix.upgrade_file.exists()


def test_the_migration_gets_the_password_in_a_passfile_that_is_gone_afterwards(prefix, on_postgres, password_file,
                                                                               monkeypatch):
    seen = {}

    def run(cmd, **kwargs):
        seen.update(cmd=cmd, env=kwargs["env"], passfile=Path(kwargs["env"]["PGPASSFILE"]).read_text())
        return release_change.subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(release_change.subprocess, "run", run)
    monkeypatch.setattr(release_change, "jupyterhub_version", lambda: "6.1.1")
    release_change.migrate(prefix, Settings(db_url=URL, db_password_file=str(password_file)), RecordingSystemctl(),
                          prefix.backups / "none")  # (PostgreSQL: always migrated)
    assert seen["passfile"].endswith(":s3cret\\:pass\\\\word\n")
    assert not [arg for arg in seen["cmd"] if "s3cret" in arg] and "PGPASSWORD" not in seen["env"]
    assert not Path(seen["env"]["PGPASSFILE"]).exists()
