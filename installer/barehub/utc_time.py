"""Times as the hub's API and barehub's records say them: ISO 8601 in UTC with a "Z" ("2026-12-06T08:00:00Z"),
read back as epoch seconds. One owner, so that every page, record and log line writes a moment the same way."""
from __future__ import annotations

from datetime import datetime, timezone


def iso(epoch: float | None) -> str:
    """"" for no time."""
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if epoch else ""


def epoch(text: str | None) -> float | None:
    """JupyterHub's ("2026-12-06T08:00:00.123456Z") and barehub's ISO times as epoch seconds; None for no time or
    text that is not one. A time without a zone is taken as UTC, as the hub writes its times."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
