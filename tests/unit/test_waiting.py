"""Bounded waits see the state at their deadline, however slow the machine."""
import time

from barehub.base.waiting import poll


def test_a_sleep_that_overshoots_the_deadline_is_followed_by_one_more_check(monkeypatch):
    """On a loaded machine a 0.2 s sleep took longer than the whole 0.3 s wait (the CI failure of stop_all's
    wait after SIGKILL): the state after it is still looked at."""
    real_sleep = time.sleep
    monkeypatch.setattr(time, "sleep", lambda s: real_sleep(s + 0.4))
    answers = iter(["", "empty"])
    assert poll(lambda: next(answers), timeout=0.3, interval=0.2) == "empty"


def test_the_wait_ends_at_its_deadline_with_none():
    calls = []
    start = time.monotonic()
    assert poll(lambda: calls.append(1), timeout=0.3, interval=0.1) is None
    assert 0.3 <= time.monotonic() - start < 1.0 and 3 <= len(calls) <= 6


def test_the_first_truthy_answer_is_returned_at_once():
    assert poll(lambda: "run", timeout=5, interval=1) == "run"
