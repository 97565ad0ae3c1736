"""Why a user's server ended, kept with the server in the hub's database so that the sessions page and the
REST API can say it ("ended: time limit reached", "ended: out of memory") instead of a server simply gone.

JupyterHub forgets a server's story when it stops: it clears the spawner's state and saves what get_state()
returns then. barehub's spawners mix this in: the reason is recorded where the spawner learns it (poll() finding
the unit or the job ended, with systemd's or Slurm's own word for why; stop() when the user, an admin or the
culler stopped it), survives clear_state() and hub restarts (it is part of the saved state), and is dropped when
the server starts again.
"""
from __future__ import annotations

import time


class RemembersEnd:
    """Mixin for a jupyterhub Spawner: `self.ended` is {"at": epoch seconds, "reason": str} or None."""

    ended: dict | None = None

    def record_end(self, reason: str) -> None:
        """The first reason learnt wins (poll's "time limit reached" over the stop() that follows it)."""
        if self.ended is None:
            self.ended = {"at": time.time(), "reason": reason}

    def get_state(self):
        state = super().get_state()
        if self.ended:
            state["ended"] = self.ended
        return state

    def load_state(self, state):
        super().load_state(state)
        ended = state.get("ended")
        self.ended = ended if isinstance(ended, dict) and isinstance(ended.get("reason"), str) else None

    # clear_state() keeps `ended` on purpose: JupyterHub clears the state right after a server stops, and
    # the reason must outlive that; start() drops it.
