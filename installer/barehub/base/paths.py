"""The base layout: DEFAULT_PREFIX and every path of an install, derived from its prefix."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_PREFIX = Path("/opt/barehub")


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
        """A link to the current release's env in envs/ (the units and the CLI use this path), whatever the
        env backend (conda or a pip venv): the name is that of the first layout, where it was a conda env."""
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
    def code_server(self) -> Path:
        """VS Code in the browser with its Node (`barehub apps install vscode`): outside the envs, kept by upgrades."""
        return self.prefix / "apps" / "code-server"

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
    def upgrade_unit(self) -> str:
        """The transient unit an upgrade of this install runs in (barehub.base.upgrade_unit): one per prefix,
        named as `systemd-escape --path` names it (barehub-upgrade-opt-barehub.service)."""
        return f"barehub-upgrade-{escape_path(self.prefix)}.service"

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
    def usage_dir(self) -> Path:
        """The local servers' usage ledger (0700 root): a JSON line per ended session in YYYY-MM.jsonl, the
        running ones' memory samples in running/ (barehub.usage_ledger)."""
        return self.records / "usage"

    @property
    def settings_file(self) -> Path:
        """The install's settings (0644 root): they decide users, ports and files, so never the hub user's."""
        return self.records / "install.json"

    @property
    def release_file(self) -> Path:
        """The release the install last converged to (written once the hub answers), and its env."""
        return self.records / "release.json"

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
        return self.settings_file.is_file()


def escape_path(path: Path) -> str:
    """`systemd-escape --path PATH`: "/" between names becomes "-", anything but [A-Za-z0-9:_.] (and a leading
    ".") becomes \\xNN."""
    escaped = []
    for i, byte in enumerate(str(path).strip("/").encode()):
        char = chr(byte)
        if char == "/":
            escaped.append("-")
        elif (char.isascii() and char.isalnum()) or char in ":_" or (char == "." and i > 0):
            escaped.append(char)
        else:
            escaped.append(f"\\x{byte:02x}")
    return "".join(escaped) or "-"


def prefix_of_env(env_prefix: str = sys.prefix) -> Optional[Path]:
    """The install whose env runs this python (PREFIX/envs/<release> or PREFIX/conda), if it is one."""
    env = Path(env_prefix).resolve()
    prefix = env.parent.parent if env.parent.name == "envs" else None
    if prefix is not None and Paths.from_prefix(prefix).is_install():
        return prefix
    return None
