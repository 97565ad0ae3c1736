"""Modules that JupyterHub's imports load but the hub seldom or never uses, loaded at their first use instead.

rfc3987_syntax. JupyterHub imports jupyter_events, whose validators import jsonschema's format checkers
(jsonschema[format-nongpl]); those import rfc3987_syntax for the "iri" and "iri-reference" formats, and it builds
about 35 Lark Earley parsers when it is imported. Measured (`python -X importtime -c "import barehub.hub"`, this
env, 2 cores): 0.78 s of the hub process's 2.0 s of imports on a busy machine (0.7 s with the stand-in instead of
1.6 s on an idle one), spent again at every start, reload and fallback to the
known-good config, while no schema of JupyterHub's events uses those formats (jsonschema #1428: upstream keeps the
import eager). Here the one name jsonschema takes from it, `is_valid_syntax`, is a stand-in that imports the real
module on its first call; any other name imports it at once. A check of an IRI then validates exactly as before.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
import types

DEFERRED = "rfc3987_syntax"


def defer_slow_imports() -> None:
    """Install the stand-in, before JupyterHub is imported (no-op when the module is absent or already loaded)."""
    if DEFERRED in sys.modules:
        return
    spec = importlib.util.find_spec(DEFERRED)
    if spec is not None:
        sys.modules[DEFERRED] = stand_in(DEFERRED, spec.submodule_search_locations)


def stand_in(name: str, path=None) -> types.ModuleType:
    """A module named `name` whose `is_valid_syntax`, or any other public name, imports the real one.
    Dunder names are not public: the import system asks for `__path__` (given: a submodule still imports) and
    printing a module asks for `__file__`; neither loads it."""
    module = types.ModuleType(name, f"stand-in for {name}, imported at its first use (barehub.lazy_imports)")
    if path is not None:
        module.__path__ = list(path)
    loaded: list[types.ModuleType] = []

    def real() -> types.ModuleType:
        if not loaded:
            if sys.modules.get(name) is module:
                del sys.modules[name]
            loaded.append(importlib.import_module(name))
        return loaded[0]

    def is_valid_syntax(*args, **kwargs):
        return real().is_valid_syntax(*args, **kwargs)

    def __getattr__(attribute: str):  # (PEP 562: a name the stand-in lacks)
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(real(), attribute)

    module.is_valid_syntax = is_valid_syntax
    module.__getattr__ = __getattr__
    return module
