"""The ports this hub hands to its local servers: each server's own, from its start until it has ended.

Why. Upstream SystemdSpawner's start takes `jupyterhub.utils.random_port()`: bind to port 0, read the number the
kernel chose, close the socket, and hand the number to the server, which binds it seconds later. The kernel only
avoids ports bound at that moment, so servers starting together can be handed the same number. Measured with a
class of 200 local servers started at once (`bench/run --only class --as-shipped`, before this): 1 to 4 servers a
run were handed a port another starting server had been given. The loser's server exited ("address already in use"), but the hub
had meanwhile found *a* server answering on that port and routed her /user/NAME/ to it: to another user's server,
where her browser sends the cookie of her own server. Here a number another of this hub's servers holds is never
handed out again until that server has ended; the kernel's own check still keeps ports other programs hold.
"""
from __future__ import annotations

import weakref
from typing import Callable

from jupyterhub.utils import random_port

TRIES = 100  # numbers drawn before giving up; ~28000 ephemeral ports, so a few hundred held cost at most a retry


class PortClaims:
    def __init__(self, draw: Callable[[], int] = random_port):
        self.draw = draw
        self.held: dict[int, weakref.ref] = {}  # port -> the spawner whose server holds it

    def claim(self, owner, wanted: int) -> int:
        """`wanted` for `owner`'s server if no other server of this hub holds it, else a fresh number; 0 (no port
        yet) holds none. Whatever `owner` held before is let go."""
        self.release(owner)
        if not wanted:
            return 0
        port = wanted
        for _ in range(TRIES):
            if not self.holder_other_than(owner, port):
                self.held[port] = weakref.ref(owner)
                return port
            port = self.draw()
        raise RuntimeError(f"no free port for the server after {TRIES} tries: {len(self.held)} held by this hub's "
                           f"servers")

    def holder_other_than(self, owner, port: int) -> bool:
        ref = self.held.get(port)
        holder = ref() if ref is not None else None
        return holder is not None and holder is not owner

    def release(self, owner) -> None:
        """`owner`'s server has ended (or starts anew): its port may be handed out again."""
        for port, ref in list(self.held.items()):
            if ref() is owner or ref() is None:
                del self.held[port]


PORTS = PortClaims()  # every LocalSpawner of this hub claims from this one
