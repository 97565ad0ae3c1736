"""Times as the hub's API and barehub's records say them: ISO 8601 in UTC with a "Z" ("2026-12-06T08:00:00Z"),
read back as epoch seconds. One owner, so that every page, record and log line writes a moment the same way."""
from __future__ import annotations

import math
from datetime import datetime, timezone

LATEST = 253402300799.0  # 9999-12-31T23:59:59Z: the last moment iso() can write


def iso(epoch: float | None) -> str:
    """"" for no time."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else ""


def epoch(text: str | None) -> float | None:
    """JupyterHub's ("2026-12-06T08:00:00.123456Z") and barehub's ISO times as epoch seconds; None for no time or
    text that is not one, or a moment before 1970 or past what iso() writes. A time without a zone is taken as
    UTC, as the hub writes its times."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return moment_of((moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp())
    except (ValueError, OverflowError):
        return None


def moment_of(value) -> float | None:
    """A number read back from a record as an epoch moment iso() can write (after 1970, before 10000), else None:
    a record that says NaN, a bool or 1e20 is no time."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if 0 < value <= LATEST else None
