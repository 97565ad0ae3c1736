"""Bounded waits for the hub to answer."""
from __future__ import annotations

import ssl
import time
from typing import Callable
import urllib.error
import urllib.request

from barehub.base.errors import BarehubError


def http_status(url: str, timeout: float = 5) -> int | None:
    """The HTTP status of GET `url`, or None if nothing answers.

    The certificate is not checked: this asks whether the hub answers through the proxy, while an
    ACME certificate may still be on its way.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ssl._create_unverified_context()) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except (OSError, ValueError):
        return None


def wait_for_ok(url: str, deadline_s: float, what: str, hint: str,
                give_up: Callable[[], str | None] = lambda: None, steady_s: float = 0.0) -> float:
    """Poll `url` until it answers 200, and keeps answering 200 for `steady_s`; returns the seconds until
    the first of those answers.

    Raises after `deadline_s`, or as soon as `give_up()` returns a reason (e.g. a crash loop).
    """
    start = time.monotonic()
    last, ok_since = None, None
    while time.monotonic() - start < deadline_s:
        last = http_status(url)
        now = time.monotonic()
        if last == 200:
            ok_since = now if ok_since is None else ok_since
            if now - ok_since >= steady_s:
                return ok_since - start
            time.sleep(0.1)
            continue
        ok_since = None
        reason = give_up()
        if reason:
            raise BarehubError(f"{what} does not come up: {reason}", hint)
        time.sleep(0.25)
    raise BarehubError(f"{what} did not answer {url} within {deadline_s:.0f} s (last status: {last})", hint)
