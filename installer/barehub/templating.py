"""The one template syntax of barehub: Python's str.format fields, every field required."""
from __future__ import annotations

import string
from pathlib import Path

from barehub.base.errors import BarehubError


def render_template(path: Path, **values) -> str:
    text = path.read_text()
    wanted = {field for _, field, _, _ in string.Formatter().parse(text) if field}
    missing = wanted - values.keys()
    if missing:
        raise BarehubError(f"template {path.name} needs values for {sorted(missing)}")
    return text.format(**values)
