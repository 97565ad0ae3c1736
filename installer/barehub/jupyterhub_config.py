# barehub's base JupyterHub config. Do not edit: it is replaced on upgrades.
# Put site config into $PREFIX/jupyterhub_config.d/*.py; those files override anything set here.
import os

from barehub.config_loading import load_fragments
from barehub.hub_config import apply_after_fragments, apply_base
from barehub.paths import Paths
from barehub.settings import load_settings

c = get_config()  # noqa: F821 (provided by traitlets)
_paths = Paths.from_prefix(os.environ["BAREHUB_PREFIX"])
apply_base(c, _paths, load_settings(_paths))
load_fragments(c, _paths.config_d)
apply_after_fragments(c)
