"""bootstrap.py's plans and checks (the conda backend cannot run here: no conda channel is reachable,
so its exact command plan is what is tested; tests/integration/test_conda_backend.py runs it whole on a stand-in
conda that answers exactly these commands)."""
import argparse
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.conftest import REPO

ENV = Path("/opt/bh/conda")


def test_pip_plan_with_lock_and_wheelhouse_is_hash_checked_and_offline(bootstrap):
    plan = bootstrap.plan_pip_env(ENV, "/usr/bin/python3", Path("/src/requirements.lock"), "barehub==2026.10.0",
                                  wheelhouse=Path("/wh"))
    pip = ["/opt/bh/conda/bin/python", "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--no-index", "--find-links", "/wh"]
    assert plan == [
        ["/usr/bin/python3", "-m", "venv", "/opt/bh/conda"],
        pip + ["--require-hashes", "--only-binary=:all:", "-r", "/src/requirements.lock"],
        pip + ["--no-deps", "--force-reinstall", "barehub==2026.10.0"],
    ]


def test_pip_plan_for_an_existing_env_keeps_the_venv(bootstrap):
    fresh = bootstrap.plan_pip_env(ENV, "/usr/bin/python3", Path("/l.lock"), "barehub==1")
    assert bootstrap.plan_pip_env(ENV, "/usr/bin/python3", Path("/l.lock"), "barehub==1", exists=True) == fresh[1:]


def test_pip_plan_with_an_index_url(bootstrap):
    plan = bootstrap.plan_pip_env(ENV, "/usr/bin/python3", None, "/src", index_url="https://mirror/simple")
    for cmd in plan[1:]:
        assert "--no-index" not in cmd
        assert cmd[cmd.index("--index-url") + 1] == "https://mirror/simple"
    assert plan[-1][-1] == "/src"


@pytest.mark.parametrize("exe, lock, expected", [
    ("/usr/bin/micromamba", "conda-linux-64.lock",
     ["/usr/bin/micromamba", "create", "--yes", "--prefix", "/opt/bh/conda", "--file", "conda-linux-64.lock"]),
    ("/opt/conda/bin/conda", "conda-linux-64.lock",
     ["/opt/conda/bin/conda", "create", "--yes", "--prefix", "/opt/bh/conda", "--file", "conda-linux-64.lock"]),
    ("/usr/bin/micromamba", None,
     ["/usr/bin/micromamba", "create", "--yes", "--prefix", "/opt/bh/conda", "--file", "environment.yml"]),
    ("/opt/conda/bin/mamba", None,
     ["/opt/conda/bin/mamba", "env", "create", "--yes", "--prefix", "/opt/bh/conda", "--file", "environment.yml"]),
])
def test_conda_plan(bootstrap, exe, lock, expected):
    plan = bootstrap.plan_conda_env(ENV, Path(exe), Path("environment.yml"), Path(lock) if lock else None, "/src")
    assert plan == [expected, ["/opt/bh/conda/bin/python", "-m", "pip", "install", "--no-deps",
                               "--force-reinstall", "/src"]]


@pytest.mark.parametrize("exe, lock, verb", [
    ("/usr/bin/micromamba", "conda-linux-64.lock", ["install"]),
    ("/opt/conda/bin/conda", "conda-linux-64.lock", ["install"]),
    ("/usr/bin/micromamba", None, ["update"]),
    ("/opt/conda/bin/conda", None, ["env", "update"]),
])
def test_conda_plan_for_an_existing_env_updates_it_in_place(bootstrap, exe, lock, verb):
    plan = bootstrap.plan_conda_env(ENV, Path(exe), Path("environment.yml"), Path(lock) if lock else None, "/src",
                                    exists=True)
    assert plan[0][1:1 + len(verb)] == verb and "--prefix" in plan[0]


def test_conda_env_update_is_given_no_yes_flag(bootstrap):
    """conda's `env update` has no --yes (it does not ask) and stops at one as an unrecognized argument."""
    plan = bootstrap.plan_conda_env(ENV, Path("/opt/conda/bin/conda"), Path("environment.yml"), None, "/src",
                                    exists=True)
    assert plan[0] == ["/opt/conda/bin/conda", "env", "update", "--prefix", "/opt/bh/conda", "--file", "environment.yml"]


def ns(**kw):
    base = dict(installer=None, wheelhouse=None, release=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_env_source_is_remembered_and_replaced_as_a_whole(bootstrap, tmp_path):
    args = bootstrap.parse_args(["--prefix", str(tmp_path), "--wheelhouse", "/wh"])
    assert (args.env_backend, args.wheelhouse) == ("pip", Path("/wh"))  # a wheelhouse implies the pip backend
    (tmp_path / "envs").mkdir()
    bootstrap.save_source(args)
    again = bootstrap.parse_args(["--prefix", str(tmp_path)])
    assert (again.env_backend, again.wheelhouse, again.index_url) == ("pip", Path("/wh"), None)
    moved = bootstrap.parse_args(["--prefix", str(tmp_path), "--index-url", "https://mirror/simple"])
    assert (moved.env_backend, moved.wheelhouse, moved.index_url) == ("pip", None, "https://mirror/simple")
    assert bootstrap.parse_args(["--prefix", str(tmp_path / "fresh")]).env_backend == "conda"


def test_current_env_switches_atomically(bootstrap, tmp_path):
    for release in ("2026.10.0", "2026.10.1"):
        (tmp_path / "envs" / release / "bin").mkdir(parents=True)
    paths = bootstrap.Paths.from_prefix(tmp_path)
    bootstrap.base.current_env.switch_current_env(paths, tmp_path / "envs" / "2026.10.0")
    assert (tmp_path / "conda").resolve() == tmp_path / "envs" / "2026.10.0"
    bootstrap.base.current_env.switch_current_env(paths, tmp_path / "envs" / "2026.10.1")
    assert (tmp_path / "conda").resolve() == tmp_path / "envs" / "2026.10.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conda", "envs"]


def release_wheel(directory: Path, version: str, files: dict[str, str]) -> Path:
    import zipfile

    wheel = directory / f"barehub-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("barehub/__init__.py", "")
        for name, text in files.items():
            z.writestr(f"barehub/{name}", text)
    return wheel


def test_a_release_wheel_carries_the_files_its_env_is_built_from(bootstrap, tmp_path):
    wheel = release_wheel(tmp_path, "2026.12.0", {"requirements.lock": "jupyterhub==6.2.0 --hash=sha256:00\n",
                                                  "environment.yml": "  - jupyterhub=6.2.0\n",
                                                  "conda-linux-64.lock": "@EXPLICIT\n"})
    files = bootstrap.env_files_from_wheel(wheel, tmp_path / "x")
    assert sorted(p.name for p in files.iterdir()) == ["conda-linux-64.lock", "environment.yml", "requirements.lock"]
    assert (files / "requirements.lock").read_text().startswith("jupyterhub==6.2.0")


@pytest.fixture
def source_with(bootstrap, monkeypatch, tmp_path):
    """A package source (index or wheelhouse) holding one barehub release wheel; records what was asked."""
    asked = []

    def with_release(version: str, files: dict[str, str]):
        def fetch(args, workdir):
            asked.append(args.release)
            return release_wheel(workdir, version, files)
        monkeypatch.setattr(bootstrap, "fetch_release", fetch)
        return asked
    return with_release


@pytest.mark.parametrize("lock", [False, True])
def test_a_conda_upgrade_builds_from_the_target_releases_files_not_the_running_ones(bootstrap, tmp_path,
                                                                                    source_with, lock):
    files = {"environment.yml": "dependencies:\n  - jupyterhub=6.2.0\n"}
    if lock:
        files["conda-linux-64.lock"] = "@EXPLICIT\nhttps://conda.example/jupyterhub-6.2.0.conda#00\n"
    source_with("2026.12.0", files)
    args = bootstrap.parse_args(["--prefix", str(tmp_path), "--env-backend", "conda", "--conda-exe", "/usr/bin/true",
                                 "--version", "2026.12.0"])
    bootstrap.resolve_release(args)
    solve, install = bootstrap.build_plan(args, "linux-64")
    used = Path(solve[solve.index("--file") + 1])
    assert used.read_text() == files["conda-linux-64.lock" if lock else "environment.yml"]
    assert used.parent != bootstrap.HERE
    assert install[-1] == args.installer and args.installer.endswith("barehub-2026.12.0-py3-none-any.whl")
    assert str(tmp_path / "envs" / "2026.12.0") in solve


@pytest.mark.parametrize("backend", ["conda", "pip"])
def test_latest_becomes_the_newest_release_the_source_has(bootstrap, tmp_path, source_with, backend):
    asked = source_with("2027.01.0", {"environment.yml": "x\n", "requirements.lock": "x\n"})
    argv = ["--prefix", str(tmp_path), "--env-backend", backend, "--version", "latest"]
    args = bootstrap.parse_args(argv + (["--conda-exe", "/usr/bin/true"] if backend == "conda" else []))
    bootstrap.resolve_release(args)
    assert asked == ["latest"] and args.release == "2027.01.0"
    assert bootstrap.env_dir_of(args) == tmp_path / "envs" / "2027.01.0"


def test_a_release_without_its_environment_file_is_refused_for_conda(bootstrap, tmp_path, source_with):
    source_with("2026.12.0", {"requirements.lock": "x\n"})
    args = bootstrap.parse_args(["--prefix", str(tmp_path), "--env-backend", "conda", "--version", "2026.12.0"])
    with pytest.raises(bootstrap.BarehubError, match="carries no environment.yml"):
        bootstrap.resolve_release(args)


def test_site_requirements_join_every_release_env(bootstrap, tmp_path):
    args = bootstrap.parse_args(["--prefix", str(tmp_path), "--wheelhouse", "/wh"])
    args.release, args.lock, args.installer = "2026.10.1", None, "/x.whl"
    assert all("-r" not in cmd for cmd in bootstrap.build_plan(args, "linux-64"))
    (tmp_path / "site-requirements.txt").write_text("jupyterhub-nativeauthenticator==1.3.0\n")
    plan = bootstrap.build_plan(args, "linux-64")
    assert plan[-1][-2:] == ["-r", str(tmp_path / "site-requirements.txt")]
    assert plan[-1][0] == str(tmp_path / "envs" / "2026.10.1" / "bin" / "python")
    stamp = bootstrap.env_stamp(plan)
    (tmp_path / "site-requirements.txt").write_text("jupyterhub-nativeauthenticator==1.3.1\n")
    assert bootstrap.env_stamp(bootstrap.build_plan(args, "linux-64")) != stamp


def test_installer_source(bootstrap, tmp_path):
    assert bootstrap.installer_spec(ns(), REPO) == str(REPO)  # this checkout
    assert bootstrap.installer_spec(ns(wheelhouse=Path("/wh")), REPO) == f"barehub=={bootstrap.VERSION}"
    assert bootstrap.installer_spec(ns(), tmp_path) == f"barehub=={bootstrap.VERSION}"  # bootstrap.py alone
    wheel = tmp_path / "barehub-1-py3-none-any.whl"
    wheel.touch()
    assert bootstrap.installer_spec(ns(installer=str(wheel)), REPO) == str(wheel)
    assert bootstrap.installer_spec(ns(release="2026.12.0"), REPO) == "barehub==2026.12.0"  # not this checkout


@pytest.mark.parametrize("argv, message", [
    (["--env-backend", "conda", "--wheelhouse", "/wh"], "--env-backend pip"),
    (["--env-backend", "pip", "--conda-exe", "/x"], "conda backend"),
    (["--prefix", "relative/dir"], "absolute"),
    (["--http-port", "70000"], "not a TCP port"),
    (["--env-backend", "pip", "--wheelhouse", "/a", "--index-url", "http://b"], "not allowed with"),
    (["--tls-cert", "/c"], "go together"),
    (["--tls-cert", "/c", "--tls-key", "/k", "--letsencrypt-domain", "a", "--letsencrypt-email", "e"], "choose one"),
    (["--no-https", "--tls-cert", "/c", "--tls-key", "/k"], "contradicts"),
])
def test_wrong_flags_are_usage_errors(bootstrap, capsys, argv, message):
    with pytest.raises(SystemExit) as exit:
        bootstrap.parse_args(argv)
    assert exit.value.code == 2
    assert message in capsys.readouterr().err


def test_unsupported_architecture(bootstrap):
    with pytest.raises(bootstrap.BarehubError, match="unsupported architecture riscv64"):
        bootstrap.check_arch("riscv64")
    assert bootstrap.check_arch("aarch64") == "linux-aarch64"


def test_port_in_use_names_the_owner_unless_it_is_allowed(bootstrap):
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert bootstrap.base.ports.listening_pid(port) == os.getpid()
        with pytest.raises(bootstrap.BarehubError, match=rf"port {port} is already in use by .*\(pid {os.getpid()}\)"):
            bootstrap.check_port_free(port)
        bootstrap.check_port_free(port, allowed_pids=[os.getpid()])
    assert bootstrap.base.ports.listening_pid(port) is None


def test_prefix_under_a_file_is_refused(bootstrap, tmp_path):
    (tmp_path / "file").touch()
    with pytest.raises(bootstrap.BarehubError, match="not a directory"):
        bootstrap.check_prefix_writable(tmp_path / "file" / "barehub")
    bootstrap.check_prefix_writable(tmp_path / "new" / "barehub")


def test_ports_come_from_flags_then_remembered_settings_then_defaults(bootstrap, tmp_path):
    paths = bootstrap.Paths.from_prefix(tmp_path)
    assert bootstrap.base.records.remembered_settings(paths) == {}
    paths.state.mkdir()  # an install made by a release before records/ kept them in state/
    legacy = bootstrap.base.records.legacy_record(paths, paths.settings_file)
    legacy.write_text('{"http_port": 8000, "https_port": 8443, "tls_cert": "/c"}')
    assert bootstrap.base.records.remembered_settings(paths)["http_port"] == 8000
    paths.records.mkdir()
    paths.settings_file.write_text('{"http_port": 8000, "https_port": 8443, "tls_cert": "/c"}')
    legacy.write_text('{"http_port": 9000}')
    remembered = bootstrap.base.records.remembered_settings(paths)
    args = lambda *argv: bootstrap.parse_args(list(argv))  # noqa: E731
    run = lambda argv, remembered: bootstrap.ports_of_run(bootstrap.settings_of_run(argv, remembered))  # noqa: E731
    public = lambda ports_https: (ports_https[0]["http_port"], ports_https[0]["https_port"], ports_https[1])  # noqa: E731
    assert public(run(args(), {})) == (80, 443, False)
    assert public(run(args(), remembered)) == (8000, 8443, True)
    assert public(run(args("--no-https"), remembered)) == (8000, 8443, False)
    assert public(run(args("--http-port", "81", "--letsencrypt-domain", "a.org",
                           "--letsencrypt-email", "x@a.org"), {})) == (81, 443, True)


def test_conflicting_ports_are_refused_naming_both_flags(bootstrap):
    ports = bootstrap.base.ports
    with pytest.raises(bootstrap.BarehubError, match="--http-port and --hub-port are both 8081"):
        ports.check_distinct_ports({"http_port": 8081, "https_port": 443, "hub_port": 8081, "proxy_api_port": 8099},
                                    https=False)
    with pytest.raises(bootstrap.BarehubError, match="--http-port and --https-port are both 8443"):
        ports.check_distinct_ports({"http_port": 8443, "https_port": 8443, "hub_port": 8081, "proxy_api_port": 8099},
                                    https=True)
    ports.check_distinct_ports({"http_port": 8443, "https_port": 8443, "hub_port": 8081, "proxy_api_port": 8099},
                                https=False)


def test_the_metrics_port_is_checked_like_the_others(bootstrap, capsys):
    with pytest.raises(SystemExit):
        bootstrap.parse_args(["--metrics-port", "70000"])
    assert "--metrics-port 70000 is not a TCP port" in capsys.readouterr().err
    with pytest.raises(bootstrap.BarehubError, match="--http-port and --metrics-port are both 8000"):
        bootstrap.base.ports.check_distinct_ports({"http_port": 8000, "metrics_port": 8000}, False)
    bootstrap.base.ports.check_distinct_ports({"http_port": 8000, "hub_port": 8081, "metrics_port": 0}, False)  # off
    assert bootstrap.base.install_settings.settings_argv(bootstrap.parse_args(["--metrics-port", "0"])) == ["--metrics-port", "0"]


def test_settings_flags_are_forwarded_to_the_installer_as_given(bootstrap):
    args = bootstrap.parse_args(["--env-backend", "pip", "--http-port", "81", "--letsencrypt-domain", "a.org",
                                 "--letsencrypt-domain", "b.org", "--letsencrypt-email", "x@a.org"])
    assert bootstrap.base.install_settings.settings_argv(args) == ["--http-port", "81", "--letsencrypt-domain", "a.org",
                                             "--letsencrypt-domain", "b.org", "--letsencrypt-email", "x@a.org"]
    assert bootstrap.base.install_settings.settings_argv(bootstrap.parse_args(["--no-https"])) == ["--no-https"]
    assert bootstrap.base.install_settings.settings_argv(bootstrap.parse_args([])) == []


def test_acme_needs_a_contact_given_now_or_remembered(bootstrap):
    with pytest.raises(bootstrap.BarehubError, match="needs --letsencrypt-email"):
        bootstrap.base.install_settings.check_acme_contact(["a.org"], None)
    bootstrap.base.install_settings.check_acme_contact(["a.org"], "x@a.org")
    bootstrap.base.install_settings.check_acme_contact([], None)


def test_tls_files_are_checked_before_anything_changes(bootstrap, tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n...")
    with pytest.raises(bootstrap.BarehubError, match="cannot read the TLS private key"):
        bootstrap.base.install_settings.check_tls_files(str(cert), str(key))
    key.write_bytes(b"\x97\xff binary, not a key")
    with pytest.raises(bootstrap.BarehubError, match="is not a PEM private key"):
        bootstrap.base.install_settings.check_tls_files(str(cert), str(key))
    key.write_text("-----BEGIN PRIVATE KEY-----\n...")
    bootstrap.base.install_settings.check_tls_files(str(cert), str(key))


def test_env_stamp_follows_the_lock_content(bootstrap, tmp_path):
    lock = tmp_path / "requirements.lock"
    lock.write_text("a==1\n")
    plan = bootstrap.plan_pip_env(ENV, "/usr/bin/python3", lock, "barehub==1")
    first = bootstrap.env_stamp(plan)
    assert bootstrap.env_stamp(plan) == first
    lock.write_text("a==2\n")
    assert bootstrap.env_stamp(plan) != first


def test_systemd_too_old_for_server_units_is_refused_with_what_to_use(bootstrap, monkeypatch):
    import subprocess

    assert bootstrap.base.machine.systemd_version("systemd 252 (252.39-1~deb12u2)\n+PAM +AUDIT") == 252
    assert bootstrap.base.machine.systemd_version("something else") is None
    monkeypatch.setattr(bootstrap.os.path, "isdir", lambda path: True)

    def systemctl(version):
        return lambda argv, **kw: subprocess.CompletedProcess(argv, 0, stdout=f"systemd {version} (x)\n")

    bootstrap.check_systemd(systemctl(243))
    with pytest.raises(bootstrap.BarehubError) as refused:
        bootstrap.check_systemd(systemctl(239))  # RHEL 8
    assert "systemd 239 is too old" in refused.value.message and "243" in refused.value.message


def test_bootstrap_loads_its_base_package_from_beside_itself_as_in_the_wheel(tmp_path):
    """The wheel ships bootstrap.py inside the package (`barehub upgrade` runs it): there it loads barehub/base/
    from beside itself, on a python that has nothing but the standard library."""
    package = tmp_path / "barehub"
    shutil.copytree(REPO / "installer" / "barehub" / "base", package / "base")
    shutil.copy(REPO / "bootstrap.py", package / "bootstrap.py")
    out = subprocess.run([sys.executable, "-I", "-S", str(package / "bootstrap.py"), "--help"],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "--letsencrypt-domain" in out.stdout and "--hub-port" not in out.stdout
