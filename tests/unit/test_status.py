"""`barehub status` says which fragments the hub serves, and fails while they are the known-good ones."""
from barehub.commands.status import hub_config_state
from barehub.hub_run import Run


def run(config, failed=None):
    return Run(pid=1, started=0.0, config=config, digest="d", base_url="/jupyter/", failed=failed)


def test_the_current_fragments_are_no_problem():
    state = hub_config_state(run("current"))
    assert state["config"] == "current" and state["base_url"] == "/jupyter/" and "failed" not in state


def test_a_hub_back_on_the_known_good_fragments_is_a_problem_with_the_reason():
    assert hub_config_state(run("known-good", {"error": "50-bad.py:1: boom"}))["failed"] == "50-bad.py:1: boom"
    # sent back by a reload because it never became healthy: no error of its own, still a problem
    assert "did not answer /hub/health" in hub_config_state(run("known-good"))["failed"]
