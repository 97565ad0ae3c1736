"""The conda backend, bootstrap.py's default, whole: install, a converging re-run, upgrade and rollback in the
booted container.

No conda channel is reachable from this machine or from CI, so the container's `conda` is a stand-in
(testbed/conda_standin.py) on its PATH, where bootstrap.py looks: it answers exactly the commands barehub gives
conda, refuses any other, and builds each release's env from that release's locked wheels (the pins of its
environment.yml checked against its lock). What barehub asked of conda is in the stand-in's log. Everything
else (the release fetched, the installer, the units, the upgrade's backup and switch, the rollback) is
barehub's own, as on a site with a real conda.

Release N-1 is this tree with an older release number, as a wheel in the site's package source, where the
conda backend takes releases from: pip's own configuration (PIP_NO_INDEX, PIP_FIND_LINKS, as a site with a
mirror sets in /etc/pip.conf), since --wheelhouse belongs to the pip backend. The module has its own prefix and
port; an install it finds at the default prefix (the session's) is put aside (uninstalled, its prefix kept)
and brought back at the end, so the modules after this one find it as it was.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from testbed.conda_standin import wrapper_script
from tests.integration.helpers import (MEASUREMENTS, PREFIX, REPO, SYSTEM_PYTHON, RequestLoop, status_code,
                                       this_release, wait_until)
from tests.integration.hubclient import HubUser

OLD, NEW = "2026.10.0", this_release()
HERE = "/opt/barehub-conda"  # this module's prefix
PORT = 28380
BASE = f"http://127.0.0.1:{PORT}"
USER, PASSWORD = "hedy", "hedy-Secret-7"
CONDA = "/usr/local/bin/conda"  # on PATH, where bootstrap.py finds conda
LOG = "/var/log/conda-standin.log"
RELEASES = "/opt/conda-test-releases"  # the rest of the package source: release N-1, the site's own package
PACKAGE_SOURCE = f"PIP_NO_INDEX=1 PIP_FIND_LINKS='/mnt/wheelhouse {RELEASES}'"
ADDITION = "barehub_site_addition"  # the site's own package (site-requirements.txt)


def older_release_wheel(work: Path, version: str) -> Path:
    """The barehub wheel of this repository's committed tree with release number `version`: all a site's package
    source holds of a past release (its env is built from the files the wheel carries)."""
    tree, out = work / "tree", work / "wheel"
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    text = (tree / "bootstrap.py").read_text()
    assert f'VERSION = "{NEW}"' in text
    (tree / "bootstrap.py").write_text(text.replace(f'VERSION = "{NEW}"', f'VERSION = "{version}"'))
    subprocess.run([SYSTEM_PYTHON, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w", str(out),
                    str(tree)], check=True, capture_output=True, timeout=600)
    return next(out.glob(f"barehub-{version}-*.whl"))


def site_addition_wheel(work: Path) -> Path:
    """A package of the site's own, for PREFIX/site-requirements.txt (every release's env gets it)."""
    src = work / "site-addition"
    (src / ADDITION).mkdir(parents=True)
    (src / ADDITION / "__init__.py").write_text('"""A site\'s own addition to the hub env."""\n')
    (src / "pyproject.toml").write_text('[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
                                        f'[project]\nname = "{ADDITION}"\nversion = "1.0"\n')
    subprocess.run([SYSTEM_PYTHON, "-m", "pip", "wheel", "--disable-pip-version-check", "--no-deps", "-w",
                    str(work / "wheel"), str(src)], check=True, capture_output=True, timeout=600)
    return next((work / "wheel").glob(f"{ADDITION}-1.0-*.whl"))


@pytest.fixture(scope="module")
def site(container, tmp_path_factory):
    """The container as a conda site: the stand-in on PATH, release N-1 and the site's own package in the
    package source, a user; the session's install put aside meanwhile."""
    work = tmp_path_factory.mktemp("conda-site")
    wheels = [older_release_wheel(work / "n-1", OLD), site_addition_wheel(work)]
    inside = Path(f"/proc/{container.pid}/root{RELEASES}")
    shutil.rmtree(inside, ignore_errors=True)
    inside.mkdir(parents=True)
    for wheel in wheels:
        shutil.copy(wheel, inside)
    assert container.run("command -v micromamba mamba conda", check=False).stdout == ""  # they would come first
    container.run(f"cat > {CONDA} && chmod 755 {CONDA}",
                  input=wrapper_script("/mnt/src/testbed/conda_standin.py", "/mnt/wheelhouse", LOG))
    container.run(f"id {USER} || (useradd --create-home {USER} && echo '{USER}:{PASSWORD}' | chpasswd)")
    put_aside = container.run(f"test -d {PREFIX}", check=False).returncode == 0
    if put_aside:
        container.run(f"barehub uninstall --prefix {PREFIX}")  # units go (one hub per machine); the prefix stays
    yield
    # its own CLI, which is there even when a failed install did not link it onto PATH; then whatever a failed
    # install left that is not yet an install (purge refuses those)
    container.run(f"{HERE}/conda/bin/barehub uninstall --prefix {HERE} --purge", check=False)
    container.run(f"rm -rf {HERE} {CONDA} {LOG} {RELEASES}")
    if put_aside:  # bootstrap.py re-run: the install as it was, with its flags, secrets and database
        container.run(f"{SYSTEM_PYTHON} /mnt/src/bootstrap.py --prefix {PREFIX}", timeout=900)


def conda_calls(box) -> list[list[str]]:
    """What barehub asked of conda, in order (the stand-in's log)."""
    return [json.loads(line) for line in box.run(f"cat {LOG}", check=False).stdout.splitlines()]


def env_create(release: str) -> list[str]:
    """bootstrap.py's conda command for a release's env: from the environment.yml the release's wheel carries."""
    return ["env", "create", "--yes", "--prefix", f"{HERE}/envs/{release}",
            "--file", f"{HERE}/envs/.download/release/environment.yml"]


def env_update(release: str) -> list[str]:
    """bootstrap.py's conda command for a release's existing env (conda's `env update` takes no --yes)."""
    return ["env", "update", "--prefix", f"{HERE}/envs/{release}",
            "--file", f"{HERE}/envs/.download/release/environment.yml"]


def has_site_addition(box, release: str) -> bool:
    return box.run(f"{HERE}/envs/{release}/bin/python -c 'import {ADDITION}'", check=False).returncode == 0


def status(box) -> dict:
    return json.loads(box.run(f"barehub status --json --prefix {HERE}").stdout)


def current_env(box) -> str:
    return box.run(f"readlink {HERE}/conda").stdout.strip()


def built_by_conda(box, release: str) -> bool:
    return box.run(f"grep -q '^# cmd: conda env create' {HERE}/envs/{release}/conda-meta/history",
                   check=False).returncode == 0


@pytest.fixture(scope="module")
def installed(container, site):
    start = time.monotonic()
    r = container.run(f"{PACKAGE_SOURCE} {SYSTEM_PYTHON} /mnt/src/bootstrap.py --prefix {HERE} --version {OLD} "
                      f"--http-port {PORT}", check=False, timeout=900)
    MEASUREMENTS["install: bootstrap.py, conda backend (stand-in), release N-1 (s)"] = round(time.monotonic() - start, 1)
    assert r.returncode == 0, r.stdout + r.stderr
    return r


@pytest.fixture(scope="module")
def hedy(installed) -> HubUser:
    return HubUser.working(BASE, USER, PASSWORD)


def server_answers(user: HubUser) -> bool:
    return status_code(f"{BASE}/user/{USER}/api/status", headers=user.auth()) == 200


def test_bootstrap_builds_the_hub_env_with_conda_by_default(container, installed):
    assert f"hub environment of release {OLD} (conda backend)" in installed.stdout
    assert conda_calls(container) == [env_create(OLD)]
    assert current_env(container) == f"envs/{OLD}" and built_by_conda(container, OLD)
    now = status(container)
    assert now["release"] == OLD and now["versions"]["barehub"] == OLD
    assert all(unit["active"] and unit["enabled"] for unit in now["units"].values())
    source = json.loads(container.run(f"cat {HERE}/envs/bootstrap.json").stdout)
    assert (source["env_backend"], source["conda_exe"]) == ("conda", None)  # found on PATH, as later runs will
    assert status_code(f"{BASE}/hub/health") == 200


def test_a_users_server_runs_on_the_conda_built_env(hedy):
    out = hedy.execute("import os, sys; print(os.path.realpath(sys.prefix))")
    assert out.strip() == f"{HERE}/envs/{OLD}"


def test_a_rerun_with_the_sites_additions_updates_the_conda_env_in_place(container, hedy):
    """Re-running bootstrap.py converges: the env stays (and keeps serving), conda updates it, the site's own
    packages join it."""
    container.run(f"echo '{ADDITION}==1.0' > {HERE}/site-requirements.txt")
    r = container.run(f"{PACKAGE_SOURCE} {SYSTEM_PYTHON} /mnt/src/bootstrap.py --prefix {HERE} --version {OLD}",
                      check=False, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert conda_calls(container) == [env_create(OLD), env_update(OLD)]
    assert current_env(container) == f"envs/{OLD}" and has_site_addition(container, OLD)
    assert status(container)["release"] == OLD and status_code(f"{BASE}/hub/health") == 200
    assert server_answers(hedy)


def test_upgrade_builds_the_new_release_with_conda_while_the_server_keeps_answering(container, hedy):
    start = time.monotonic()
    with RequestLoop(f"{BASE}/user/{USER}/api/status", hedy.auth()) as server:
        r = container.run(f"{PACKAGE_SOURCE} barehub upgrade {NEW} --prefix {HERE}", check=False, timeout=900)
    MEASUREMENTS[f"upgrade {OLD} -> {NEW}, conda backend (stand-in) (s)"] = round(time.monotonic() - start, 1)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"release {OLD} -> {NEW}: backed up" in r.stdout
    assert conda_calls(container) == [env_create(OLD), env_update(OLD), env_create(NEW)]
    assert current_env(container) == f"envs/{NEW}" and built_by_conda(container, NEW)
    assert has_site_addition(container, NEW)  # the site's additions join every release's env
    now = status(container)
    assert now["release"] == NEW and now["versions"]["barehub"] == NEW
    assert server.failed == 0 and server.ok > 5, server.failures
    assert built_by_conda(container, OLD)  # kept, for its running servers and a rollback


def test_rollback_serves_the_previous_conda_env_again(container, hedy):
    container.run(f"barehub rollback --prefix {HERE}", timeout=600)
    assert current_env(container) == f"envs/{OLD}"
    now = status(container)
    assert now["release"] == OLD and now["versions"]["barehub"] == OLD
    wait_until(lambda: status_code(f"{BASE}/hub/health") == 200, 60)
    r = hedy.api("GET", "user", timeout=10)
    assert r.status_code == 200 and r.json()["name"] == USER  # the database is the pre-upgrade one
    wait_until(lambda: server_answers(hedy), 60)
    assert len(conda_calls(container)) == 3  # nothing built: the env was still there
