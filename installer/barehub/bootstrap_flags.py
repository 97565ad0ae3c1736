"""bootstrap.py's install-settings flags and checks, reused by `barehub install` (one definition)."""
from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from barehub.paths import shipped


def load() -> ModuleType:
    """bootstrap.py as a module: shipped inside the package, or at the top of a source checkout."""
    if "barehub_bootstrap" not in sys.modules:
        spec = importlib.util.spec_from_file_location("barehub_bootstrap", shipped("bootstrap.py"))
        module = importlib.util.module_from_spec(spec)
        sys.modules["barehub_bootstrap"] = module
        spec.loader.exec_module(module)
    return sys.modules["barehub_bootstrap"]
