"""barehub: a minimal, systemd-based JupyterHub distribution."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("barehub")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
