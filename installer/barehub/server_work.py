"""What a running server is doing, kept with it for the culler: since when it has been busy (and with what), as
its own jupyter-server last said (barehub.server_activity), and until when its user asked to keep it.

barehub's spawners mix this in. It is part of the spawner's state, so the culler reads it in the one paged user
list it already asks the hub for (its role has admin:server_state), and a "keep until" outlives a hub restart or
reload (the hub saves the state when it is asked, barehub.sessions). Both end with the server: clear_state() drops
them, so a server started again is neither busy nor kept.
"""
from __future__ import annotations

# where a local server finds its own unit's name (barehub.local_spawner sets it): the one cgroup whose CPU is its
# work (barehub.server_activity)
SERVER_UNIT_ENV = "BAREHUB_SERVER_UNIT"


class RemembersWork:
    """Mixin for a jupyterhub Spawner.

    `work`: {"busy_since": epoch seconds or None, "busy": "kernel" | "cpu" | None, "reported_at": epoch seconds} or
    None before the server's first report; `keep_until`: epoch seconds or None."""

    work: dict | None = None
    keep_until: float | None = None

    def record_work(self, busy: str | None, busy_since: float | None, now: float, fresh_s: float,
                    started: float | None = None) -> None:
        """A report from the server. The hub keeps the start of a spell itself: while the server goes on saying it
        is busy (each report within fresh_s of the last), the first busy_since stands, whatever later reports say
        (a cap on busy time cannot be pushed back); a new spell starts when the server says, but no earlier than
        the server started and no later than now."""
        previous = self.work or {}
        going_on = (busy and previous.get("busy") and previous.get("busy_since") is not None
                    and now - previous.get("reported_at", 0) <= fresh_s)
        if going_on:
            busy_since = previous["busy_since"]
        elif busy:
            busy_since = max(min(busy_since if busy_since is not None else now, now), started or 0)
        self.work = {"busy_since": busy_since if busy else None, "busy": busy, "reported_at": now}

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
