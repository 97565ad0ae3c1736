"""The bounded health waits: a single answer from a stale route is not health."""
import time

import pytest

from barehub import health
from barehub.base.errors import BarehubError


def answers(monkeypatch, sequence):
    statuses = iter(sequence)
    monkeypatch.setattr(health, "http_status", lambda url, timeout=5: next(statuses, sequence[-1]))


def test_a_single_200_between_failures_is_not_steady_health(monkeypatch):
    answers(monkeypatch, [200, 502, 502, 502])  # the previous route, then the new one that leads nowhere
    with pytest.raises(BarehubError, match="did not answer .* within 2 s .last status: 502"):
        health.wait_for_ok("http://x/hub/health", 2, "the hub", "hint", steady_s=0.5)


def test_steady_answers_pass_after_the_window(monkeypatch):
    answers(monkeypatch, [None, 502, 200])
    start = time.monotonic()
    took = health.wait_for_ok("http://x/hub/health", 30, "the hub", "hint", steady_s=0.3)
    returned = time.monotonic() - start
    # until the first answer of the steady stretch (after two misses, 0.25 s apart), returned after the window:
    # compared with each other, not with the clock, so that a busy machine's late wake-ups cannot fail it
    assert 0.5 <= took and returned - took >= 0.3
