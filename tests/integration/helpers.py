"""The one place integration tests take their shared helpers and constants from.

The machinery itself (container, request loops, wheelhouse) lives in testbed/, which bench/ uses too.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

from testbed.container import Container  # noqa: F401 (re-exported for the tests)
from testbed.web import RequestLoop, status_code, wait_until  # noqa: F401
from testbed.wheelhouse import CACHE, SYSTEM_PYTHON, build_wheelhouse  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
HUB, PROXY = "jupyterhub.service", "jupyterhub-proxy.service"
HTTP_PORT = 28080
BASE_URL = f"http://127.0.0.1:{HTTP_PORT}"  # the hub as a client on this machine reaches it: traefik's port
PREFIX = "/opt/barehub"
# The local accounts the tests log in as, each module its own (their servers stay apart): name -> password
PASSWORDS = {"alice": "alice-Secret-1", "bob": "bob-Secret-2", "frank": "frank-Secret-4", "grace": "grace-Secret-5",
             "heidi": "heidi-Secret-6", "ivan": "ivan-Secret-7",
             **{name: f"{name}-Secret-9" for name in ("nora", "omar", "pia", "quinn", "rita", "uma", "vic", "wes", "xena")}}
USER, PASSWORD = "alice", PASSWORDS["alice"]  # the session install's user
CACHE_IN_CONTAINER = "/mnt/test-cache"  # the tests' build cache (testbed.wheelhouse.CACHE), read-only in a container
MEASUREMENTS: dict[str, float | str] = {}  # printed at the end of the run (conftest)
DROP_INS = REPO / "jupyterhub_config.d"  # the shipped fragments
# slurm.py's shipped profiles (the one-node Slurm has no "gpu" partition; the cluster has)
CPU_PROFILE, GPU_PROFILE = "CPU only: 2 CPUs, 4 GB, 8 hours", "1 GPU: 8 CPUs, 32 GB, 4 hours"


def add_local_user(container, name: str) -> str:
    """The local account `name` with its password from PASSWORDS, made unless it exists; returns the password."""
    password = PASSWORDS[name]
    container.run(f"id {name} || (useradd --create-home --shell /bin/bash {name} "
                  f"&& echo '{name}:{password}' | chpasswd)")
    return password


def bootstrap_cmd(*extra: str) -> str:
    """bootstrap.py as the tests' site runs it: pip backend from the offline wheelhouse."""
    return " ".join([SYSTEM_PYTHON, "/mnt/src/bootstrap.py", "--env-backend", "pip",
                     "--wheelhouse", "/mnt/wheelhouse", "--http-port", str(HTTP_PORT), *extra])


def filled(name: str, values: dict[str, str]) -> str:
    """A shipped drop-in with its placeholder site values replaced, as an admin would edit it."""
    text = (DROP_INS / name).read_text()
    for placeholder, value in values.items():
        assert placeholder in text, f"{placeholder!r} not in {name}"
        text = text.replace(placeholder, value)
    return text


def put_fragment(box, name: str, text: str) -> None:
    box.run(f"mkdir -p {PREFIX}/jupyterhub_config.d && cat > {PREFIX}/jupyterhub_config.d/{name}", input=text)


def hub_run(container, prefix: str = PREFIX) -> dict:
    """What the running hub recorded about itself (state/hub-run.json): pid, start time, config set, base_url."""
    return json.loads(container.run(f"cat {prefix}/state/hub-run.json").stdout)


def unit_properties(container, unit: str, *names: str) -> dict[str, str]:
    """systemd's properties of a unit in the container (`systemctl show -p ...`)."""
    out = container.run(f"systemctl show {unit} " + " ".join(f"-p {n}" for n in names)).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


def place_release(container, work: Path, ref: str, edits: dict[str, tuple[str, str]], name: str) -> Path:
    """A past release made the way it was made: this repository's tree at `ref` with `edits`
    ({file: (old, new)}), its own hash lock and wheelhouse (both cached by its pyproject), placed
    inside the container at /opt/NAME. A release is a whole tree: its bootstrap.py loads barehub/shared.py."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(work)], input=archive, check=True)
    for file, (old, new) in edits.items():
        text = (work / file).read_text()
        assert old in text, (file, old)
        (work / file).write_text(text.replace(old, new))
    key = hashlib.sha256((work / "pyproject.toml").read_bytes()).hexdigest()[:16]
    cached_lock = CACHE / f"{name}-{key}.lock"
    if not cached_lock.exists():
        uv = Path(sys.executable).parent / "uv"  # from tests/requirements.txt
        subprocess.run([str(uv), "pip", "compile", "pyproject.toml", "--universal", "--generate-hashes",
                        "--python-version", "3.11", "-q", "-o", str(cached_lock)], cwd=work, check=True, timeout=600)
    shutil.copy(cached_lock, work / "requirements.lock")
    wheelhouse = CACHE / f"wheelhouse-{name}-{key}"
    for old_wheel in wheelhouse.glob("barehub-*.whl"):
        old_wheel.unlink()
    subprocess.run([SYSTEM_PYTHON, str(work / "bootstrap.py"), "--make-wheelhouse", str(wheelhouse)],
                   check=True, capture_output=True, timeout=1200)
    inside = Path(f"/proc/{container.pid}/root/opt/{name}")
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(work, inside)
    shutil.copytree(wheelhouse, inside / "wheelhouse")
    return Path(f"/opt/{name}")


def place_past_commit(container, work: Path, ref: str, version: str, name: str) -> Path:
    """place_release of a past commit of this repository, its release number made `version` (older than this
    one); skips, saying why, in a clone without that commit (a shallow one)."""
    import pytest

    if subprocess.run(["git", "-C", str(REPO), "cat-file", "-e", f"{ref}^{{commit}}"]).returncode:
        pytest.skip(f"this clone does not have commit {ref} (a shallow clone)")
    past = subprocess.run(["git", "-C", str(REPO), "show", f"{ref}:bootstrap.py"], capture_output=True, text=True,
                          check=True).stdout
    return place_release(container, work, ref, {"bootstrap.py": (version_line(past), f'VERSION = "{version}"')}, name)


def install_past_release_with_a_server(container, release: Path, user: str):
    """A fresh install of a placed past release (pip backend, its wheelhouse) with `user`'s server running;
    returns the logged-in HubUser."""
    from tests.integration.hubclient import HubUser

    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    password = add_local_user(container, user)
    container.run(f"{SYSTEM_PYTHON} {release}/bootstrap.py --env-backend pip --wheelhouse {release}/wheelhouse "
                  f"--http-port {HTTP_PORT}", timeout=900)
    hub_user = HubUser(BASE_URL, user, password)
    assert hub_user.login().status_code == 302
    hub_user.spawn()
    return hub_user


def cgroup_cpu_s(container, unit: str) -> float:
    """What the unit's cgroup counted so far, as systemd says it, else as the kernel's unified hierarchy does
    (this machine's containers mount cpu and cpuacct apart, where systemd says "[not set]")."""
    props = dict(line.split("=", 1) for line in
                 container.run(f"systemctl show -p CPUUsageNSec -p ControlGroup {unit}").stdout.splitlines())
    if props["CPUUsageNSec"].isdigit():
        return int(props["CPUUsageNSec"]) / 1e9
    stat = container.run(f"cat /sys/fs/cgroup/unified{props['ControlGroup']}/cpu.stat "
                         f"|| cat /sys/fs/cgroup{props['ControlGroup']}/cpu.stat").stdout
    return int(dict(line.split() for line in stat.splitlines())["usage_usec"]) / 1e6


def exposure(container, unit: str, label: str) -> float:
    """systemd's exposure score of a running unit (0 best, 10 worst), recorded as a measurement."""
    out = container.run(f"systemd-analyze security {unit} --no-pager").stdout
    overall = [line for line in out.splitlines() if "Overall exposure level" in line][0]
    MEASUREMENTS[f"systemd-analyze security {unit} ({label})"] = overall.split(":", 1)[1].strip()
    return float(overall.split(":")[1].split()[0])


def version_line(bootstrap_text: str) -> str:
    """The line of a bootstrap.py that defines its release."""
    for line in bootstrap_text.splitlines():
        if line.startswith("VERSION = "):
            return line
    raise AssertionError("no VERSION in bootstrap.py")


def this_release() -> str:
    return version_line((REPO / "bootstrap.py").read_text()).split('"')[1]


@contextlib.contextmanager
def resolving_to_loopback(*names: str):
    """requests (urllib3) in this process connects to 127.0.0.1 for `names`, as a client whose DNS says so
    would: the TLS name check and the Host header stay the names'. The machine's /etc/hosts is not touched."""
    from urllib3.util import connection

    original = connection.create_connection

    def resolve(address, *args, **kwargs):
        host, port = address
        return original(("127.0.0.1" if host in names else host, port), *args, **kwargs)

    connection.create_connection = resolve
    try:
        yield
    finally:
        connection.create_connection = original
