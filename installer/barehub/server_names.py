"""Which server names are used as they are, in a unit's, a directory's and a Slurm job's name.

JupyterHub 6 lets users create only "safe slugs" (jupyterhub.slugs.is_valid_safe_slug: 1 to 30 lowercase ASCII
letters, digits and single hyphens, starting with a letter, ending with a letter or digit); an older hub let in
any name, and a database may still hold one. The rule is written here, not imported: a release may run on
JupyterHub 5 (an upgrade's rollback target), which has no jupyterhub.slugs.
"""
from __future__ import annotations

import re

SAFE_SLUG = re.compile(r"[a-z](?:[a-z0-9]|-(?=[a-z0-9])){0,29}\Z")


def is_safe(name: str) -> bool:
    return bool(SAFE_SLUG.match(name)) and len(name) <= 30
