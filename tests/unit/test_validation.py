"""`barehub check`: problems are found without starting anything, and named by file:line."""
import re

import pytest

from barehub.package_files import shipped
from barehub.validation import validate


def check(prefix, text, name="50-site.py"):
    (prefix.config_d / name).write_text(text)
    fragments, problems = validate(prefix)
    return [str(p) for p in problems]


def test_good_config_passes(prefix):
    assert check(prefix, "c.JupyterHub.admin_users = {'alice'}\nc.Spawner.mem_limit = '2G'\n") == []


DROP_INS = sorted(p.name for p in shipped("jupyterhub_config.d").glob("*.py"))
READ_AT_LOAD = {"metrics.py": "/etc/barehub/prometheus-token"}  # site files a drop-in must read to load


def shipped_text(prefix, name: str) -> str:
    """A drop-in as shipped, with the site file it reads at load made (in a temporary place)."""
    text = (shipped("jupyterhub_config.d") / name).read_text()
    if name in READ_AT_LOAD:
        site_file = prefix.prefix / "site-file"
        site_file.write_text("0123abcd" * 8 + "\n")
        text = text.replace(READ_AT_LOAD[name], str(site_file))
    return text


@pytest.mark.parametrize("name", DROP_INS)
def test_each_shipped_drop_in_passes_as_shipped(prefix, name):
    assert check(prefix, shipped_text(prefix, name), name=f"50-{name}") == []


def test_a_drop_in_whose_site_file_is_missing_names_the_line(prefix):
    text = (shipped("jupyterhub_config.d") / "metrics.py").read_text()
    [problem] = check(prefix, text, name="50-metrics.py")
    lineno = text[:text.index("with open(TOKEN_FILE)")].count("\n") + 1
    assert problem.startswith(f"{prefix.config_d}/50-metrics.py:{lineno}: ") and "prometheus-token" in problem


@pytest.mark.parametrize("name", DROP_INS)
def test_a_typo_in_each_drop_in_is_named_with_a_suggestion(prefix, name):
    text = shipped_text(prefix, name)
    # misspell the last option the drop-in sets
    *_, last = re.finditer(r"^c\.(\w+)\.(\w+)(?= = )", text, re.M)
    section, option = last.groups()
    lineno = text[:last.start()].count("\n") + 1
    typo = text[:last.end()] + "x" + text[last.end():]
    assert check(prefix, typo, name=f"50-{name}") == [
        f"{prefix.config_d}/50-{name}:{lineno}: c.{section}.{option}x is not an option of {section} "
        f"(did you mean {option}?)"]


def test_unknown_option_gets_a_suggestion(prefix):
    assert check(prefix, "x = 1\nc.JupyterHub.authenticater_class = 'pam'\n") == [
        f"{prefix.config_d}/50-site.py:2: c.JupyterHub.authenticater_class is not an option of JupyterHub "
        "(did you mean authenticator_class?)"]


def test_unknown_section_gets_a_suggestion(prefix):
    [problem] = check(prefix, "c.Jupyterhub.admin_users = {'a'}\n")
    assert problem.endswith("50-site.py:1: c.Jupyterhub is not a configurable class that is installed "
                            "(did you mean JupyterHub?)")


def test_wrong_type(prefix):
    [problem] = check(prefix, "c.Spawner.start_timeout = 'soon'\n")
    assert "50-site.py:1: c.Spawner.start_timeout:" in problem and "int" in problem


def test_bad_class_name(prefix):
    [problem] = check(prefix, "c.JupyterHub.spawner_class = 'nosuch.module.Spawner'\n")
    assert "50-site.py:1: c.JupyterHub.spawner_class:" in problem and "could not be imported" in problem


def test_syntax_error_names_file_and_line(prefix):
    [problem] = check(prefix, "a = 1\nc.JupyterHub.admin_users = {'alice'\n")
    assert f"{prefix.config_d}/50-site.py:2: SyntaxError" in problem


def test_runtime_error_names_file_and_line(prefix):
    [problem] = check(prefix, "a = 1\n\nc.Spawner.default_url = undefined_name\n")
    assert problem == f"{prefix.config_d}/50-site.py:3: NameError: name 'undefined_name' is not defined"


def test_later_fragment_is_blamed_for_the_value_in_effect(prefix):
    (prefix.config_d / "10-a.py").write_text("c.Spawner.start_timeout = 60\n")
    [problem] = check(prefix, "c.Spawner.start_timeout = 'x'\n", name="20-b.py")
    assert "20-b.py:1:" in problem


def test_option_of_the_chosen_subclass_is_accepted_in_its_base_section(prefix):
    # traitlets hands c.Spawner options to the configured subclass; SimpleLocalProcessSpawner has home_dir_template
    assert check(prefix, "c.JupyterHub.spawner_class = 'simple'\nc.Spawner.home_dir_template = '/tmp/{username}'\n") \
        == []


def test_check_does_not_touch_the_database_or_secrets(prefix):
    before = sorted(p.name for p in prefix.state.iterdir())
    check(prefix, "c.JupyterHub.admin_users = {'alice'}\n")
    assert sorted(p.name for p in prefix.state.iterdir()) == before
    assert not prefix.db_file.exists()


@pytest.mark.parametrize("fragment, expected", [
    ('c.JupyterHub.load_roles.append({"name": "teachers", "scopes": ["admin:userz"], "users": ["alice"]})\n',
     "50-bad.py:1: c.JupyterHub.load_roles: role 'teachers': Scope 'admin:userz' for role teachers does not exist"),
    ('c.JupyterHub.services.append({"url": "http://127.0.0.1:9999", "api_token": "x" * 32})\n',
     "50-bad.py:1: c.JupyterHub.services: an entry without a name"),
    ('c.JupyterHub.services.append({"name": "x", "comand": ["true"]})\n',
     "50-bad.py:1: c.JupyterHub.services: service 'x' has no field 'comand' (did you mean command?)"),
    ('c.JupyterHub.load_roles = [{"name": "Teachers!", "scopes": ["read:users"]}]\n',
     "50-bad.py:1: c.JupyterHub.load_roles: role 'Teachers!': Invalid role name"),
    ('c.JupyterHub.load_roles = [{"name": "ta", "scopes": ["read:users"], "services": ["nope"]}]\n',
     "names the service 'nope', which is not in c.JupyterHub.services"),
    ('import sys\nsys.exit()\n', "50-bad.py:2: SystemExit"),
    ('raise KeyError("oops")\n', "50-bad.py:1: KeyError: 'oops'"),
])
def test_the_deeper_check_finds_what_the_hub_would_only_find_at_start(prefix, fragment, expected):
    (prefix.config_d / "50-bad.py").write_text(fragment)
    _, problems = validate(prefix)
    assert any(expected in str(p) for p in problems), problems


def test_the_hubs_port_must_not_collide(prefix):
    import socket

    (prefix.config_d / "50-port.py").write_text("c.JupyterHub.hub_bind_url = 'http://127.0.0.1:80'\n")
    _, problems = validate(prefix)
    assert [str(p) for p in problems] == [f"{prefix.config_d}/50-port.py:1: the hub's port 80 is also traefik's "
                                          "(--http-port)"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        (prefix.config_d / "50-port.py").write_text(f"c.JupyterHub.hub_bind_url = 'http://127.0.0.1:{port}'\n")
        _, problems = validate(prefix)
        assert len(problems) == 1 and f"the hub's port {port} is already in use by " in str(problems[0])
        # the running hub may hold it (a reload that keeps the port)
        import os
        assert validate(prefix, hub_pids=(os.getpid(),))[1] == []


def test_an_authenticator_that_refuses_its_config_at_start_is_named(prefix):
    """oauthenticator 17 raises at construction for allowed_groups without manage_groups: checking each value
    alone passed it, and the hub did not start (the Keycloak drop-in shipped before 2026-11-30 did this)."""
    problems = check(prefix, 'c.JupyterHub.authenticator_class = "generic-oauth"\n'
                             'c.GenericOAuthenticator.allowed_groups = {"jupyter-users"}\n')
    assert len(problems) == 1
    assert re.match(r".*50-site\.py:1: GenericOAuthenticator refuses this config: ValueError: .*allowed_groups "
                    r"requires .*manage_groups", problems[0]), problems


@pytest.mark.parametrize("url", ["sqlite:////srv/jupyterhub/jupyterhub.sqlite",
                                 "postgresql+psycopg://hub:s3cret@db.example.org/hub"])
def test_a_fragment_that_moves_the_hubs_database_is_refused(prefix, url):
    """Upgrades back up and roll back the database barehub knows: a fragment's own would be migrated unbacked."""
    [problem] = check(prefix, f"x = 1\nc.JupyterHub.db_url = {url!r}\n")
    assert problem.startswith(f"{prefix.config_d}/50-site.py:2: c.JupyterHub.db_url: ") and "--db-url" in problem
    assert str(prefix.db_file) in problem and "s3cret" not in problem


def test_a_fragment_that_names_the_hubs_own_database_passes(prefix):
    assert check(prefix, f"c.JupyterHub.db_url = 'sqlite:///{prefix.db_file}'\n") == []


@pytest.mark.parametrize("fragment, named", [
    ("c.JupyterHub.db_kwargs = {'connect_args': {'database': '/srv/other.sqlite'}}",
     "db_kwargs['connect_args']['database']"),
    ("c.JupyterHub.db_kwargs = {'connect_args': {'dbname': 'other', 'connect_timeout': 3}}",
     "db_kwargs['connect_args']['dbname']"),
    ("import sqlite3\nc.JupyterHub.db_kwargs = {'creator': lambda: sqlite3.connect('/srv/other.sqlite')}",
     "db_kwargs['creator']"),
])
def test_db_kwargs_that_connect_elsewhere_are_refused_too(prefix, fragment, named):
    [problem] = check(prefix, fragment + "\n")
    line = fragment.count("\n") + 1
    assert problem.startswith(f"{prefix.config_d}/50-site.py:{line}: c.JupyterHub.{named}: the hub's database is set "
                              "with --db-url")


def test_db_kwargs_that_only_tune_the_connection_pass(prefix):
    assert check(prefix, "c.JupyterHub.db_kwargs = {'pool_recycle': 300, 'connect_args': {'timeout': 30}}\n") == []


def test_db_kwargs_of_a_wrong_type_are_named_not_a_crash(prefix):
    problems = check(prefix, "c.JupyterHub.db_kwargs = 5\n")
    assert problems and all(p.startswith(f"{prefix.config_d}/50-site.py:1: c.JupyterHub.db_kwargs: ")
                            for p in problems), problems
