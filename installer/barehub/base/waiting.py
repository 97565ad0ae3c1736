"""Bounded waits: poll a check until it holds or a deadline passes, asked once more at the deadline."""
from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


def poll(check: Callable[[], T], timeout: float, interval: float) -> Optional[T]:
    """What `check()` returned once it was truthy, within `timeout` s; None when the deadline passed first.

    The last sleep ends at the deadline and is followed by one more check: a loop that tests the clock before it
    checks lets one slow sleep use up a short wait unseen. On the CI machine a 0.3 s wait after
    SIGKILL saw only its first check, and a cgroup emptied 0.2 s later was taken as still full."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        time.sleep(min(interval, left))
