#!/usr/bin/env python3
"""Install or converge a barehub JupyterHub under PREFIX (default: barehub.base.paths.DEFAULT_PREFIX).

Runs on the system python with the standard library only. It checks the machine,
creates the hub environment in PREFIX/conda (conda/micromamba or a pip venv), installs
the barehub package into it and hands over to `python -m barehub install`.
Re-running it is safe: every step converges and secrets and the database are kept.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

# The release this script installs; the package version is read from here (one source).
VERSION = "2026.11.0"

HERE = Path(__file__).resolve().parent


def load_base():
    """barehub's base package (barehub/base/: stdlib only), which the package shares: in a checkout under
    installer/, in a wheel beside this file. Loaded under a name of its own, without the rest of barehub."""
    for directory in (HERE / "installer" / "barehub" / "base", HERE / "base"):
        if (directory / "__init__.py").is_file():
            spec = importlib.util.spec_from_file_location("barehub_base", directory / "__init__.py",
                                                          submodule_search_locations=[str(directory)])
            package = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = package  # its modules import each other relatively, dataclasses look it up
            spec.loader.exec_module(package)
            for module in sorted(directory.glob("*.py")):
                if module.stem != "__init__":
                    importlib.import_module(f"{spec.name}.{module.stem}")
            return package
    sys.exit(f"bootstrap.py: barehub's base package is missing next to {__file__}: use a complete checkout or "
             "release")


base = load_base()
BarehubError, Paths = base.errors.BarehubError, base.paths.Paths
settings_table = base.install_settings
SUPPORTED_ARCHES = {"x86_64": "linux-64", "amd64": "linux-64", "aarch64": "linux-aarch64", "arm64": "linux-aarch64"}
MICROMAMBA_URL = "https://micro.mamba.pm/api/micromamba/{platform}/latest"
PIP_LOCK = "requirements.lock"
CONDA_LOCK = "conda-{platform}.lock"
ENV_FILE = "environment.yml"
MIN_HUB_PYTHON = (3, 11)  # ipykernel 7 and jupyterhub 6; pyproject.toml says the same
ENV_STAMP = ".barehub-env"  # written last: its content says which inputs the env was built from


# ---------------------------------------------------------------- arguments

def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bootstrap.py",
        description=f"Install barehub {VERSION}: JupyterHub + traefik supervised by systemd.",
    )
    p.add_argument("--prefix", type=Path, default=base.paths.DEFAULT_PREFIX,
                   help="base directory (default: %(default)s)")
    p.add_argument("--version", dest="release", metavar="X",
                   help=f"the barehub release to install or move to: X, or 'latest' (default: {VERSION})")
    p.add_argument("--env-backend", choices=("conda", "pip"),
                   help="how to build the hub env: conda/micromamba (the default) or a pip venv (remembered)")
    p.add_argument("--conda-exe", type=Path, help="conda, mamba or micromamba to use (conda backend)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--wheelhouse", type=Path, help="directory of wheels for an offline install (pip backend)")
    src.add_argument("--index-url", help="package index to install from (pip backend)")
    p.add_argument("--installer", help="barehub package to install: checkout dir, sdist or wheel "
                   "(default: this checkout, or barehub==VERSION from the wheelhouse/index)")
    settings_table.add_settings_arguments(p, bootstrap=True)
    p.add_argument("--make-wheelhouse", type=Path, metavar="DIR",
                   help="download everything the pip backend needs into DIR (for air-gapped sites) and exit")
    args = p.parse_args(argv)
    if not args.prefix.is_absolute():
        p.error(f"--prefix must be an absolute path, not {args.prefix}")
    args.paths = Paths.from_prefix(args.prefix)
    apply_remembered_source(args, base.records.remembered_source(args.paths))
    if args.env_backend == "conda" and (args.wheelhouse or args.index_url):
        p.error("--wheelhouse/--index-url belong to the pip backend: add --env-backend pip")
    if args.env_backend == "pip" and args.conda_exe:
        p.error("--conda-exe belongs to the conda backend")
    settings_table.check_settings_arguments(p, args)
    return args


SOURCE_FIELDS = ("env_backend", "wheelhouse", "index_url", "conda_exe")


def apply_remembered_source(args: argparse.Namespace, remembered: Dict) -> None:
    """Where envs come from: the flags given now, else what an earlier run used, else the defaults.

    Giving a new source (backend, wheelhouse or index) replaces the remembered one as a whole.
    """
    if not any(getattr(args, f) for f in SOURCE_FIELDS):
        for field in SOURCE_FIELDS:
            value = remembered.get(field)
            setattr(args, field, Path(value) if value and field in ("wheelhouse", "conda_exe") else value)
    if not args.env_backend:
        args.env_backend = "pip" if (args.wheelhouse or args.index_url) and not args.conda_exe else "conda"


def save_source(args: argparse.Namespace) -> None:
    data = {f: (str(getattr(args, f)) if getattr(args, f) else None) for f in SOURCE_FIELDS}
    data["python"] = sys.executable
    target = args.paths.env_source_file
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, target)


# ---------------------------------------------------------------- checks

def check_systemd(run: Callable = subprocess.run) -> None:
    if not os.path.isdir("/run/systemd/system"):
        raise BarehubError(
            "systemd is not running as the init system (PID 1)",
            "barehub supervises the hub with systemd; use a machine or container booted with systemd",
        )
    try:
        out = run(["systemctl", "--version"], check=True, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BarehubError(f"systemctl does not answer: {e}", "check that systemd is installed and running")
    base.machine.check_systemd_version(out)


def check_arch(machine: Optional[str] = None) -> str:
    machine = machine or platform.machine()
    if machine not in SUPPORTED_ARCHES:
        raise BarehubError(f"unsupported architecture {machine}", "barehub supports x86_64 and aarch64")
    return SUPPORTED_ARCHES[machine]


def check_prefix_writable(prefix: Path) -> None:
    existing = prefix
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise BarehubError(f"{existing} is not a directory", f"choose another --prefix than {prefix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BarehubError(f"{existing} is not writable", f"choose a writable --prefix (now {prefix})")


def check_port_free(port: int, allowed_pids: Sequence[int] = ()) -> None:
    owner = base.ports.port_owner(port, allowed_pids)
    if owner:
        raise BarehubError(f"port {port} is already in use by {owner}",
                           "stop that service, or choose another port with --http-port/--https-port")


def unit_main_pid(unit: str, run: Callable = subprocess.run) -> int:
    out = run(["systemctl", "show", "--property=MainPID", "--value", unit], capture_output=True, text=True)
    try:
        return int(out.stdout.strip() or 0)
    except ValueError:
        return 0


def settings_of_run(args: argparse.Namespace, remembered: Dict) -> Dict:
    """The settings this run will use: given flags, else remembered settings, else defaults (merged once, as the
    installer merges them)."""
    return settings_table.merge(remembered, settings_table.given_settings(args))


def ports_of_run(values: Dict) -> Tuple[Dict[str, int], bool]:
    """The ports a run's settings listen on, and whether HTTPS is on."""
    return {name: values[name] for name in settings_table.DEFAULT_PORTS}, settings_table.https_on(values)


def preflight(args: argparse.Namespace) -> str:
    base.machine.require_root("bootstrap.py", hint="run it again with sudo: sudo python3 bootstrap.py ...")
    check_systemd()
    conda_platform = check_arch()
    check_prefix_writable(args.prefix)
    remembered = base.records.remembered_settings(args.paths)
    if args.tls_cert:
        settings_table.check_tls_files(args.tls_cert, args.tls_key)
    values = settings_of_run(args, remembered)
    settings_table.check_acme_contact(values["acme_domains"], values["acme_email"])
    ports, https = ports_of_run(values)
    base.ports.check_distinct_ports(ports, https)
    for port in [ports["http_port"]] + ([ports["https_port"]] if https else []):
        check_port_free(port, allowed_pids=[unit_main_pid("jupyterhub-proxy.service")])
    if args.env_backend == "pip" and sys.version_info < MIN_HUB_PYTHON:
        raise BarehubError(
            f"the pip backend builds the hub env from this python ({platform.python_version()}), "
            f"and JupyterHub needs >= {'.'.join(map(str, MIN_HUB_PYTHON))}",
            "run bootstrap.py with a newer python3, or use the conda backend (it brings its own python)",
        )
    if args.env_backend == "pip" and args.wheelhouse and not args.wheelhouse.is_dir():
        raise BarehubError(f"wheelhouse {args.wheelhouse} is not a directory",
                             "make one with: python3 bootstrap.py --make-wheelhouse DIR")
    return conda_platform


# ---------------------------------------------------------------- plans (pure)

def pip_source_args(wheelhouse: Optional[Path], index_url: Optional[str]) -> List[str]:
    if wheelhouse:
        return ["--no-index", "--find-links", str(wheelhouse)]
    if index_url:
        return ["--index-url", index_url]
    return []


def is_checkout(here: Path) -> bool:
    return (here / "pyproject.toml").is_file() and (here / "installer").is_dir()


def installer_spec(args: argparse.Namespace, here: Path = HERE) -> str:
    """What to pip-install as the barehub package."""
    if args.installer:
        return str(Path(args.installer).resolve()) if os.path.exists(args.installer) else args.installer
    release = getattr(args, "release", None) or VERSION
    if release == VERSION and not getattr(args, "wheelhouse", None) and is_checkout(here):
        return str(here)
    return f"barehub=={release}"


def fetch_release(args: argparse.Namespace, workdir: Path) -> Path:
    """Download the barehub wheel of the wanted release (X, or the newest for 'latest')."""
    spec = "barehub" if args.release == "latest" else f"barehub=={args.release}"
    run_cmd([sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
             "--only-binary=:all:", "-d", str(workdir), *pip_source_args(args.wheelhouse, args.index_url), spec],
            f"fetching {spec}")
    wheels = sorted(workdir.glob("barehub-*.whl"))
    if not wheels:
        raise BarehubError(f"no wheel of {spec} was downloaded", "check --index-url/--wheelhouse")
    return wheels[-1]


def env_files_from_wheel(wheel: Path, target: Path) -> Path:
    """A release's wheel carries the files its env is built from (its pip lock, its environment.yml and
    conda locks, as tested with that release): extracted into `target`, which is returned."""
    import zipfile

    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            base = name[len("barehub/"):] if name.startswith("barehub/") else ""
            if base in (PIP_LOCK, ENV_FILE) or (base.startswith("conda-") and base.endswith(".lock") and "/" not in base):
                (target / base).write_bytes(z.read(name))
    return target


def plan_pip_env(env_dir: Path, python: str, lock: Optional[Path], installer: str,
                 wheelhouse: Optional[Path] = None, index_url: Optional[str] = None,
                 exists: bool = False) -> List[List[str]]:
    """Commands that build (or, if it `exists`, converge) the hub env with venv + pip."""
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
           "--no-input", *pip_source_args(wheelhouse, index_url)]
    plan = [] if exists else [[python, "-m", "venv", str(env_dir)]]
    if lock:
        plan.append(pip + ["--require-hashes", "--only-binary=:all:", "-r", str(lock)])
        plan.append(pip + ["--no-deps", "--force-reinstall", installer])
    else:
        plan.append(pip + ["--force-reinstall", "--no-deps", installer])
        plan.append(pip + [installer])
    return plan


def plan_conda_env(env_dir: Path, conda_exe: Path, env_file: Path, lock: Optional[Path],
                   installer: str, exists: bool = False) -> List[List[str]]:
    """Commands that build (or, if it `exists`, converge) the hub env with conda, mamba or micromamba.

    The explicit lock (conda-lock -k explicit) pins every package by URL and hash; without one
    the env is solved from environment.yml. barehub itself is pip-installed without deps:
    environment.yml carries all of them. conda's `env update` has no --yes (it does not ask), and refuses one.
    """
    exe, prefix = str(conda_exe), ["--prefix", str(env_dir)]
    micromamba = conda_exe.name.startswith("micromamba")
    if lock:  # the explicit format is read by all three the same way
        solve = [exe, "install" if exists else "create", "--yes", *prefix, "--file", str(lock)]
    elif micromamba:
        solve = [exe, "update" if exists else "create", "--yes", *prefix, "--file", str(env_file)]
    else:
        solve = [exe, "env", *(["update"] if exists else ["create", "--yes"]), *prefix, "--file", str(env_file)]
    python = str(env_dir / "bin" / "python")
    return [solve, [python, "-m", "pip", "install", "--no-deps", "--force-reinstall", installer]]


def env_stamp(plan: List[List[str]]) -> str:
    """Fingerprint of what the env is built from: changes when the plan or a requirements file does."""
    h = hashlib.sha256(repr(plan).encode())
    for cmd in plan:
        for flag, arg in zip(cmd, cmd[1:]):
            if flag == "-r" and Path(arg).is_file():
                h.update(Path(arg).read_bytes())
    return h.hexdigest()


# ---------------------------------------------------------------- actions

def say(msg: str) -> None:
    print(f"barehub-bootstrap: {msg}", flush=True)


def run_cmd(cmd: List[str], what: str) -> None:
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        hint = "see the output above"
        if any(sign in proc.stdout for sign in ("NewConnectionError", "Failed to establish", "Network is unreachable",
                                                  "Temporary failure in name resolution")):
            hint = "the package index is unreachable: check the network or use --wheelhouse for an offline install"
        elif "Could not find a version" in proc.stdout or "No matching distribution" in proc.stdout:
            hint = "the package index or wheelhouse lacks a package: check --index-url/--wheelhouse"
        raise BarehubError(f"{what} failed (exit {proc.returncode}):\n{tail}", hint)


def env_is_usable(env_dir: Path) -> bool:
    python = env_dir / "bin" / "python"
    if not python.exists():
        return False
    try:
        return subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def find_conda(explicit: Optional[Path]) -> Optional[Path]:
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise BarehubError(f"--conda-exe {explicit} is not executable", "give the path of conda, mamba or micromamba")
        return explicit
    for name in ("micromamba", "mamba", "conda"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return None


def fetch_micromamba(paths: Paths, conda_platform: str) -> Path:
    target = paths.micromamba
    if target.exists():
        return target
    url = MICROMAMBA_URL.format(platform=conda_platform)
    say(f"fetching micromamba from {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            data = resp.read()
    except OSError as e:
        raise BarehubError(f"could not download micromamba: {e}",
                             "install conda/micromamba yourself and pass --conda-exe, or use --env-backend pip")
    target.parent.mkdir(parents=True, exist_ok=True)
    archive = target.parent / "micromamba.tar.bz2"
    archive.write_bytes(data)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("bin/micromamba")
        if member is None:
            raise BarehubError("the micromamba archive has no bin/micromamba", "pass --conda-exe instead")
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(member.read())
    tmp.chmod(0o755)
    os.replace(tmp, target)
    archive.unlink()
    return target


def resolve_release(args: argparse.Namespace) -> None:
    """Pin down what to install: the release ('latest' becomes the newest the package source has), its
    barehub package, and the files THAT release builds its env from (args.env_files), not this one's."""
    args.release = args.release or VERSION
    args.env_files = HERE
    here_has = (HERE / (PIP_LOCK if args.env_backend == "pip" else ENV_FILE)).is_file()
    if not args.installer and (args.release != VERSION or not here_has):
        workdir = args.paths.download_dir
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir(parents=True)
        wheel = fetch_release(args, workdir)
        args.release = wheel.name.split("-")[1]
        args.installer = str(wheel)
        args.env_files = env_files_from_wheel(wheel, workdir / "release")
        if args.env_backend == "conda" and not (args.env_files / ENV_FILE).is_file():
            raise BarehubError(f"the wheel of release {args.release} ({wheel.name}) carries no {ENV_FILE}",
                               "use a complete barehub release, or the pip backend")
    args.lock = args.env_files / PIP_LOCK if (args.env_files / PIP_LOCK).is_file() else None


def env_dir_of(args: argparse.Namespace) -> Path:
    return args.paths.env_of(args.release)


def build_plan(args: argparse.Namespace, conda_platform: str, exists: bool = False) -> List[List[str]]:
    env_dir = env_dir_of(args)
    installer = installer_spec(args)
    if args.env_backend == "pip":
        plan = plan_pip_env(env_dir, sys.executable, args.lock, installer, args.wheelhouse, args.index_url, exists)
    else:
        conda = find_conda(args.conda_exe) or fetch_micromamba(args.paths, conda_platform)
        lock = args.env_files / CONDA_LOCK.format(platform=conda_platform)
        plan = plan_conda_env(env_dir, conda, args.env_files / ENV_FILE, lock if lock.is_file() else None,
                              installer, exists)
    site = args.paths.site_requirements
    if site.is_file():  # the site's additions, re-applied to every release's env
        plan.append([str(env_dir / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                     "--no-input", *pip_source_args(args.wheelhouse, args.index_url), "-r", str(site)])
    return plan


def ensure_env(args: argparse.Namespace, conda_platform: str) -> bool:
    """Build or converge the release's env, aside from the running one.

    Returns False when it was already built from the same inputs. The running hub and its env are
    untouched: the installer of this env makes it current, once the upgrade's checks and backup are done
    (barehub.release_change), so a failed download, install or check changes nothing that works.
    """
    env_dir = env_dir_of(args)
    stamp_file = env_dir / ENV_STAMP
    stamp = env_stamp(build_plan(args, conda_platform))
    usable = env_is_usable(env_dir)
    plan = build_plan(args, conda_platform, exists=usable)
    fresh = not (usable and stamp_file.is_file() and stamp_file.read_text() == stamp)
    if fresh or os.path.isdir(installer_spec(args)):  # a checkout's code can change under the same version
        if env_dir.exists() and not usable:
            say(f"{env_dir} is incomplete (an interrupted run?): rebuilding it")
            shutil.rmtree(env_dir)
        stamp_file.unlink(missing_ok=True)
        for cmd in plan:
            run_cmd(cmd, " ".join(cmd[:4]) + " ...")
        stamp_file.write_text(stamp)
    save_source(args)
    shutil.rmtree(args.paths.download_dir, ignore_errors=True)
    return fresh


def make_wheelhouse(target: Path) -> None:
    """Download the locked wheels and build barehub's wheel into `target` (run where PyPI is reachable)."""
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    run_cmd(pip + ["download", "--disable-pip-version-check", "--require-hashes", "--only-binary=:all:",
                   "-d", str(target), "-r", str(HERE / PIP_LOCK)], "downloading the locked wheels")
    run_cmd(pip + ["wheel", "--disable-pip-version-check", "--no-deps", "-w", str(target), str(HERE)],
            "building the barehub wheel")


def create_prefix(paths: Paths):
    """The prefix and envs/, then the lock: one run at a time from here on (the installer inherits it)."""
    paths.envs.mkdir(mode=0o755, parents=True, exist_ok=True)
    return base.install_lock.InstallLock(paths).acquire()


def step(n: int, total: int, title: str, fn: Callable, *a):
    start = time.monotonic()
    say(f"[{n}/{total}] {title} ...")
    result = fn(*a)
    say(f"[{n}/{total}] {title}: done in {time.monotonic() - start:.1f} s")
    return result


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.make_wheelhouse:
            step(1, 1, f"making wheelhouse {args.make_wheelhouse}", make_wheelhouse, args.make_wheelhouse)
            return 0
        if base.upgrade_unit.wanted(args.paths, args.release, VERSION):  # outlives this session: see there
            again = [sys.executable, str(Path(__file__).resolve()), *(sys.argv[1:] if argv is None else argv)]
            return base.upgrade_unit.run_in_unit(args.paths, again, say)
        total = 4
        os.umask(0o022)  # the env is read by every user's server, whatever root's umask is
        conda_platform = step(1, total, "checking this machine", preflight, args)
        lock = step(2, total, f"creating {args.prefix}", create_prefix, args.paths)
        resolve_release(args)
        changed = step(3, total, f"hub environment of release {args.release} ({args.env_backend} backend) "
                       f"in {env_dir_of(args)}", ensure_env, args, conda_platform)
        if not changed:
            say("hub environment already up to date")
        say(f"[4/{total}] running the installer")
        sys.stdout.flush()
        # the installer of the release's env, which switches PREFIX/conda to it only once it is safe to
        lock.exec_installer(env_dir_of(args) / "bin" / "python", args.prefix, settings_table.settings_argv(args))
    except BarehubError as e:
        print(f"barehub-bootstrap: error: {e.message}", file=sys.stderr)
        if e.hint:
            print(f"barehub-bootstrap: hint: {e.hint}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("barehub-bootstrap: interrupted; run it again to finish", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
