"""What a running server is doing, kept with it for the culler: since when it has been busy (and with what), as
its own jupyter-server last said (barehub.server_activity), and until when its user asked to keep it.

barehub's spawners mix this in. It is part of the spawner's state, so the culler reads it in the one paged user
list it already asks the hub for (its role has admin:server_state), and a "keep until" outlives a hub restart or
reload (the hub saves the state when it is asked, barehub.sessions). Both end with the server: clear_state() drops
them, so a server started again is neither busy nor kept.
"""
from __future__ import annotations

import time


class RemembersWork:
    """Mixin for a jupyterhub Spawner.

    `work`: {"busy_since": epoch seconds or None, "busy": "kernel" | "cpu" | None, "reported_at": epoch seconds} or
    None before the server's first report; `keep_until`: epoch seconds or None."""

    work: dict | None = None
    keep_until: float | None = None

    def record_work(self, busy_since: float | None, busy: str | None) -> None:
        self.work = {"busy_since": busy_since if busy else None, "busy": busy, "reported_at": time.time()}

    def get_state(self):
        state = super().get_state()
        if self.work:
            state["work"] = self.work
        if self.keep_until:
            state["keep_until"] = self.keep_until
        return state

    def load_state(self, state):
        super().load_state(state)
        work, keep_until = state.get("work"), state.get("keep_until")
        self.work = work if isinstance(work, dict) else None
        number = isinstance(keep_until, (int, float)) and not isinstance(keep_until, bool)
        self.keep_until = float(keep_until) if number else None

    def clear_state(self):
        super().clear_state()
        self.work = None
        self.keep_until = None
