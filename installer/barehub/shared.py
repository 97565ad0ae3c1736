"""What bootstrap.py and the barehub package share. Standard library only, Python >= 3.9.

bootstrap.py runs on the system python before the package exists, so it loads this one file by path;
the package imports it as `barehub.shared`. Here, and nowhere else, live:
- DEFAULT_PREFIX and `Paths`, the base layout: every path of an install, derived from its prefix;
- `BarehubError`, the one error type: a message, a hint for the admin, an exit code;
- the install-settings flags (added to both command lines) and their checks, ports included;
- reading the JSON records an earlier run left, and switching the current env;
- `InstallLock`: one bootstrap, install, upgrade or rollback at a time per prefix.
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

DEFAULT_PREFIX = Path("/opt/barehub")


class BarehubError(Exception):
    """Raised by library code; each command line prints it once and maps it to the exit code."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code


# ---------------------------------------------------------------- the base layout

@dataclass(frozen=True)
class Paths:
    """Every path of an install, derived from its prefix (never from import-time globals).

    Modes: prefix, config_d, proxy, records 0755 root; state 0700 hub user; known_good 0750 root:hub group.
    """

    prefix: Path

    @classmethod
    def from_prefix(cls, prefix) -> "Paths":
        return cls(Path(prefix).resolve())

    # --- the base layout
    @property
    def env(self) -> Path:
        """A link to the current release's env in envs/ (the units and the CLI use this path)."""
        return self.prefix / "conda"

    @property
    def env_bin(self) -> Path:
        return self.env / "bin"

    @property
    def config_d(self) -> Path:
        """The site's fragments, loaded in lexicographic order."""
        return self.prefix / "jupyterhub_config.d"

    @property
    def state(self) -> Path:
        """Private to the hub: database, secrets, install settings (0700)."""
        return self.prefix / "state"

    @property
    def records(self) -> Path:
        """Root's own records (0755 root): what root decides from, never writable by the hub user."""
        return self.prefix / "records"

    @property
    def proxy(self) -> Path:
        """traefik's static config; readable by the proxy user only."""
        return self.prefix / "proxy"

    @property
    def envs(self) -> Path:
        """One env per release; `env` (PREFIX/conda) links to the current one."""
        return self.prefix / "envs"

    def env_of(self, release: str) -> Path:
        return self.envs / release

    @property
    def env_source_file(self) -> Path:
        """Where envs come from (backend, wheelhouse/index, python): re-used by later runs and upgrades."""
        return self.envs / "bootstrap.json"

    @property
    def download_dir(self) -> Path:
        return self.envs / ".download"

    @property
    def micromamba(self) -> Path:
        return self.prefix / "micromamba" / "bin" / "micromamba"

    @property
    def site_requirements(self) -> Path:
        """The site's additions to the hub env (pip requirement lines), re-applied to every release's env."""
        return self.prefix / "site-requirements.txt"

    @property
    def backups(self) -> Path:
        return self.prefix / "backups"

    # --- root's records
    @property
    def lock_file(self) -> Path:
        return self.records / "install.lock"

    @property
    def applied_file(self) -> Path:
        """What each unit was last (re)started with: a re-run restarts what an interrupted run did not."""
        return self.records / "applied.json"

    @property
    def upgrade_file(self) -> Path:
        """The upgrade under way (from, to, its backup): a re-run of it reuses that backup."""
        return self.records / "upgrade.json"

    @property
    def known_good(self) -> Path:
        """The fragments of the last config with which the hub became healthy (0750 root:hub group)."""
        return self.records / "known-good"

    @property
    def fragment_check_file(self) -> Path:
        """The last refusal of the fragments by the check (0600 root), until a check passes: `barehub status`
        names it (barehub.fragment_check)."""
        return self.records / "fragment-check.json"

    @property
    def settings_file(self) -> Path:
        """The install's settings (0644 root): they decide users, ports and files, so never the hub user's."""
        return self.records / "install.json"

    @property
    def release_file(self) -> Path:
        """The release the install last converged to (written once the hub answers), and its env."""
        return self.records / "release.json"

    def legacy_record(self, record: Path) -> Path:
        """Where releases up to 2026.11.0 kept a record: state/, which the hub user owns."""
        return self.state / record.name

    # --- state

    @property
    def hub_run_file(self) -> Path:
        """Written by the hub once it has started: which config it runs, its base_url, a failed config."""
        return self.state / "hub-run.json"

    @property
    def db_file(self) -> Path:
        return self.state / "jupyterhub.sqlite"

    @property
    def cookie_secret(self) -> Path:
        return self.state / "jupyterhub_cookie_secret"

    @property
    def traefik_api_password(self) -> Path:
        return self.state / "traefik_api_password"

    @property
    def crypt_key(self) -> Path:
        """Encrypts auth_state in the database (used when a fragment sets enable_auth_state)."""
        return self.state / "jupyterhub_crypt_key"

    @property
    def barehub_api_token(self) -> Path:
        """Token of the `barehub` service, used by `barehub status`."""
        return self.state / "barehub_api_token"

    # --- proxy
    @property
    def traefik_static(self) -> Path:
        return self.proxy / "traefik.toml"

    @property
    def traefik_dynamic_dir(self) -> Path:
        """Watched by traefik: root's files (tls.toml, barehub.toml), and the hub's routes/ (root:proxy 0751)."""
        return self.proxy / "dynamic"

    @property
    def traefik_routes_dir(self) -> Path:
        """The hub's: its rules file, written to a temp file here and renamed (hub user:proxy 2750).

        A directory of its own, so that no file of root's lies where the hub user can rename it (with a
        --hub-user, dynamic/ was hers: she renamed root's tls.toml, and the next run chowned the key to her).
        traefik reads subdirectories of its directory at each reload but watches only the directory itself
        (measured with traefik 3.7.15: a rename in a subdirectory goes unnoticed, its changed timestamps
        do not), so the hub touches routes/ after each write (barehub.traefik_proxy)."""
        return self.traefik_dynamic_dir / "routes"

    @property
    def traefik_rules(self) -> Path:
        """The hub's routes for traefik: JSON, which traefik reads as YAML (barehub.traefik_proxy says why)."""
        return self.traefik_routes_dir / "rules.yaml"

    @property
    def traefik_legacy_rules(self) -> Path:
        """Routes and the hub's bookkeeping in one TOML file, as releases before barehub.route_table kept them
        (in dynamic/; an upgrade moves it here, where the hub reads it once)."""
        return self.traefik_routes_dir / "rules.toml"

    @property
    def proxy_routes(self) -> Path:
        """The hub's bookkeeping of its routes (targets and JupyterHub's data), which traefik never reads."""
        return self.state / "proxy_routes.json"

    @property
    def traefik_default_tls(self) -> Path:
        """A self-signed ECDSA key and certificate, made once, for traefik's default TLS store when the
        site gives none (root's, 0600; inlined into tls.toml)."""
        return self.proxy / "default_tls.pem"

    @property
    def traefik_middlewares(self) -> Path:
        """barehub's own dynamic config: the retry that hides hub restarts."""
        return self.traefik_dynamic_dir / "barehub.toml"

    @property
    def traefik_tls(self) -> Path:
        """TLS options and the default certificate (the site's own, or traefik_default_tls)."""
        return self.traefik_dynamic_dir / "tls.toml"

    @property
    def acme_dir(self) -> Path:
        """The only place traefik may write: its ACME account and certificates."""
        return self.proxy / "acme"

    @property
    def acme_storage(self) -> Path:
        return self.acme_dir / "acme.json"

    # --- inside the env
    @property
    def python(self) -> Path:
        return self.env_bin / "python"

    @property
    def traefik_bin(self) -> Path:
        return self.env_bin / "traefik"

    def is_install(self) -> bool:
        """Whether an install has converged here (its settings are written before anything starts)."""
        return self.settings_file.is_file() or self.legacy_record(self.settings_file).is_file()


def prefix_of_env(env_prefix: str = sys.prefix) -> Optional[Path]:
    """The install whose env runs this python (PREFIX/envs/<release> or PREFIX/conda), if it is one."""
    env = Path(env_prefix).resolve()
    prefix = env.parent.parent if env.parent.name == "envs" else None
    if prefix is not None and Paths.from_prefix(prefix).is_install():
        return prefix
    return None


# ---------------------------------------------------------------- records and the current env

def open_no_follow(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """A descriptor of the regular, single-named file at `path`, never through a link another user planted.

    The one way root opens a file in a directory another user can write (state/, proxy/dynamic/routes/,
    proxy/acme/): O_NOFOLLOW, O_NONBLOCK (a FIFO planted there must not hang root), then checked on the
    descriptor. Raises FileNotFoundError when there is none (without O_CREAT), and BarehubError, naming the
    file, for a symbolic link, a hard link or anything but a regular file.
    """
    hint = "remove it (and find out who put it there), then run again"
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise BarehubError(f"{path} is a symbolic link: root does not follow links in a directory another "
                               "user can write", hint) from None
        if e.errno in (errno.ENXIO, errno.EISDIR, errno.ENODEV, errno.EOPNOTSUPP):  # a FIFO, socket, directory, device
            raise BarehubError(f"{path} is not a regular file: root does not touch it", hint) from None
        raise
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
        return fd
    os.close(fd)
    what = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"a hard link ({st.st_nlink} names)"
    raise BarehubError(f"{path} is {what}: root does not touch it", hint)


def read_json_dict(path: Path) -> Dict:
    """A JSON object an earlier run wrote, or {} if there is none (or it is unreadable, or not a regular file)."""
    try:
        with open(open_no_follow(path)) as f:
            data = json.load(f)
    except (OSError, ValueError, BarehubError):
        return {}
    return data if isinstance(data, dict) else {}


def remembered_source(paths: Paths) -> Dict:
    """Where an earlier run of this prefix took its envs from (bootstrap.py writes it)."""
    return read_json_dict(paths.env_source_file)


def switch_current_env(paths: Paths, env_dir: Path) -> None:
    """Point PREFIX/conda at `env_dir`, atomically: the units and the CLI use that path."""
    if paths.env.is_dir() and not paths.env.is_symlink():  # an env from before envs/ existed
        os.replace(paths.env, paths.env_of("unversioned"))
    tmp = paths.prefix / ".conda.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(env_dir.relative_to(paths.prefix))
    os.replace(tmp, paths.env)


# ---------------------------------------------------------------- one run at a time

class InstallLock:
    """An exclusive lock per prefix, held by bootstrap.py and handed to the installer it execs.

    flock(2) on PREFIX/records/install.lock: the kernel drops it when the holder exits, so an
    interrupted run never leaves a stale lock. The holder writes its pid and command line into the
    file, so that a second run can say who holds it.
    """

    ENV = "BAREHUB_LOCK_FD"

    def __init__(self, paths: Paths):
        self.path = paths.lock_file
        self.fd: Optional[int] = None

    def acquire(self) -> "InstallLock":
        inherited = self._inherited()
        if inherited is not None:
            self.fd = inherited
            return self
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BarehubError(f"another barehub run is changing {self.path.parents[1]}: {holder}",
                               "wait for it to finish, then run this again", exit_code=75)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        self.fd = fd
        return self

    def _inherited(self) -> Optional[int]:
        """The lock fd bootstrap.py passed on when it exec'd this installer, if it is this lock."""
        value = os.environ.get(self.ENV, "")
        if not value.isdigit():
            return None
        fd = int(value)
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            if same:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds for our own open file description
                return fd
        except OSError:
            return None
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def pass_on(self) -> None:
        """Keep the lock across exec(): the installer that bootstrap.py execs finds it in its environment."""
        assert self.fd is not None
        os.set_inheritable(self.fd, True)
        os.environ[self.ENV] = str(self.fd)


# ---------------------------------------------------------------- ports

def listening_pid(port: int) -> Optional[int]:
    """PID of the process listening on TCP `port` (any address), or None if the port is free."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    if not inodes:
        return None
    targets = {f"socket:[{i}]" for i in inodes}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                if os.readlink(fd) in targets:
                    return int(pid_dir.name)
        except OSError:
            continue
    return -1  # listening, but the owner is not visible to us


def port_owner(port: int, allowed_pids: Sequence[int] = ()) -> Optional[str]:
    """Who listens on TCP `port` ("nginx (pid 12)"), or None if it is free or one of `allowed_pids` holds it."""
    pid = listening_pid(port)
    if pid is None or pid in allowed_pids:
        return None
    if pid < 0:
        return "another process"
    try:
        return f"{Path(f'/proc/{pid}/comm').read_text().strip()} (pid {pid})"
    except OSError:
        return f"pid {pid}"


# ---------------------------------------------------------------- the machine

MIN_SYSTEMD = 243  # jupyterhub-systemdspawner's SYSTEMD_REQUIRED_VERSION: user servers are its units


def systemd_version(version_output: str) -> Optional[int]:
    """The major version from `systemctl --version` ("systemd 252 (252.39-1~deb12u2)"), if it says one."""
    words = version_output.split()
    if len(words) >= 2 and words[0] == "systemd":
        try:
            return int(words[1].split(".")[0])
        except ValueError:
            return None
    return None


def check_systemd_version(version_output: str) -> None:
    """Refuse a systemd too old for server units (the spawner would stop the hub at every start)."""
    version = systemd_version(version_output)
    if version is not None and version < MIN_SYSTEMD:
        raise BarehubError(
            f"systemd {version} is too old: barehub needs systemd {MIN_SYSTEMD} or newer",
            f"user servers are systemd units (jupyterhub-systemdspawner needs {MIN_SYSTEMD}+, and stops the "
            "hub on older ones); use a newer distribution (RHEL 9, Debian 11, Ubuntu 22.04 or later)",
        )


# ---------------------------------------------------------------- install settings flags

SETTINGS_FLAGS = ("http_port", "https_port", "http_address", "trusted_proxies", "hub_user", "hub_sudo",
                  "acme_domains", "acme_email", "acme_server", "acme_ca_file", "tls_cert", "tls_key", "no_https",
                  "metrics_port")
FLAG_NAMES = {"acme_domains": "--letsencrypt-domain", "acme_email": "--letsencrypt-email",
              "trusted_proxies": "--trusted-proxy"}
DEFAULT_PORTS = {"http_port": 80, "https_port": 443, "hub_port": 8081, "proxy_api_port": 8099}


def flag_name(name: str) -> str:
    return FLAG_NAMES.get(name, "--" + name.replace("_", "-"))


def add_settings_arguments(p: argparse.ArgumentParser) -> None:
    """The install settings: remembered by the installer and re-applied on later runs and upgrades.

    Defined once, here, and added to both command lines (bootstrap.py and `barehub install`).
    """
    g = p.add_argument_group("install settings (remembered)")
    g.add_argument("--http-port", type=int, help="public HTTP port (default 80)")
    g.add_argument("--https-port", type=int, help="public HTTPS port when HTTPS is on (default 443)")
    g.add_argument("--http-address", metavar="ADDR",
                   help="address traefik's public ports listen on (default: all); 127.0.0.1 behind a site's "
                        "own reverse proxy")
    g.add_argument("--trusted-proxy", dest="trusted_proxies", action="append", metavar="IP[/BITS]",
                   help="a reverse proxy in front of traefik whose X-Forwarded-* headers are trusted "
                        "(repeat for more; others' are overwritten)")
    g.add_argument("--hub-user", help="run the hub as this user instead of root")
    g.add_argument("--hub-sudo", choices=("yes", "no"),
                   help="let a --hub-user hub run sudo, for sudo- and batch-based spawners (default: no; its "
                        "sandbox then cannot filter system calls)")
    g.add_argument("--letsencrypt-domain", dest="acme_domains", action="append", metavar="DOMAIN",
                   help="turn on HTTPS with a Let's Encrypt certificate for DOMAIN (repeat for more names)")
    g.add_argument("--letsencrypt-email", dest="acme_email", metavar="EMAIL", help="ACME account contact")
    g.add_argument("--acme-server", metavar="URL",
                   help="another ACME CA's directory URL (Let's Encrypt staging, smallstep, ...)")
    g.add_argument("--acme-ca-file", metavar="PEM", help="root CA that signed the ACME server's own HTTPS certificate")
    g.add_argument("--tls-cert", metavar="PEM", help="turn on HTTPS with this certificate (chain) file instead")
    g.add_argument("--tls-key", metavar="PEM", help="the private key of --tls-cert")
    g.add_argument("--no-https", action="store_true", default=None, help="turn HTTPS off again")
    g.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve traefik's Prometheus metrics on 127.0.0.1:PORT (0: off, the default)")


def check_settings_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """What the flags alone can tell, reported as usage errors before anything else runs."""
    for name in DEFAULT_PORTS:
        port = getattr(args, name, None)
        if port is not None and not 0 < port < 65536:
            p.error(f"{flag_name(name)} {port} is not a TCP port")
    if getattr(args, "metrics_port", None) is not None and not 0 <= args.metrics_port < 65536:
        p.error(f"--metrics-port {args.metrics_port} is not a TCP port (or 0 for off)")
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.tls_cert and args.acme_domains:
        p.error("choose one: --letsencrypt-domain (certificates from an ACME CA) or --tls-cert/--tls-key")
    if args.no_https and (args.tls_cert or args.acme_domains):
        p.error("--no-https contradicts --tls-cert/--letsencrypt-domain")


def settings_argv(args: argparse.Namespace) -> List[str]:
    """The settings flags that were given, as arguments for `barehub install`."""
    argv: List[str] = []
    for name in SETTINGS_FLAGS:
        value = getattr(args, name, None)
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


def check_distinct_ports(ports: Mapping[str, int], https: bool) -> None:
    """traefik's public ports, the hub's own port and traefik's API port must all differ."""
    used = {name: port for name, port in ports.items() if (https or name != "https_port") and port}
    seen: Dict[int, str] = {}
    for name, port in used.items():
        if port in seen:
            raise BarehubError(f"{flag_name(seen[port])} and {flag_name(name)} are both {port}",
                               "give each its own port", exit_code=2)
        seen[port] = name


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
