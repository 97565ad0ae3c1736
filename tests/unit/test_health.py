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


def test_waiting_for_the_hub_gives_up_at_its_first_restart(prefix):
    """Each start tries the current and the known-good fragments: one exit (systemd's first restart) means both
    failed, and the caller (an upgrade's rollback) should not wait for more."""
    import time

    from barehub import hub_run
    from barehub.base.errors import BarehubError
    from tests.unit.conftest import RecordingSystemctl

    restarts = iter(["4", "4", "5"])  # as the unit counts them across its life
    systemctl = RecordingSystemctl(show=lambda unit, *props: {"NRestarts": next(restarts, "5"),
                                                              "ActiveState": "activating"})
    start = time.monotonic()
    with pytest.raises(BarehubError, match="the hub does not start"):
        hub_run.wait_for_start(prefix, time.time(), systemctl, deadline_s=5)
    assert time.monotonic() - start < 2
