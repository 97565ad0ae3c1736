# barehub's base JupyterHub config. Do not edit: it is replaced on upgrades.
# Put site config into $PREFIX/jupyterhub_config.d/*.py; those files override anything set here.
import os

from barehub.config_loading import config_dir, load_fragments
from barehub.hub_config import apply_after_fragments, apply_base
from barehub.base.paths import Paths
from barehub.settings import load_settings

c = get_config()  # noqa: F821 (provided by traitlets)
_paths = Paths.from_prefix(os.environ["BAREHUB_PREFIX"])
_settings = load_settings(_paths)
apply_base(c, _paths, _settings)
load_fragments(c, config_dir(_paths.config_d, _paths.known_good))
apply_after_fragments(c, _paths, _settings)
