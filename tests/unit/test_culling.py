"""The culler's decision for each server (barehub.culling), as jupyterhub-idle-culler runs it, and the config
that carries the site's limits to it (barehub.hub_config)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest

from barehub.culling import POLICY_ENV, Arbiter, Limits, Policy, decide
from barehub.server_work import RemembersWork
from barehub.utc_time import iso
from barehub.validation import load_config, validate

NOW = 1_800_000_000.0
GPU = "1 GPU: 8 CPUs, 32 GB, 4 hours"
POLICY = Policy(Limits(3600, max_busy=0, max_age=0), {GPU: Limits(900, max_busy=4 * 3600, max_age=0)})


def server(idle_s: float = 0, age_s: float = 7200, profile: str | None = None, busy_for: float | None = None,
           busy: str = "kernel", reported_ago: float = 10, keep_for: float | None = None, name: str = "") -> dict:
    state = {}
    if busy_for is not None:
        state["work"] = {"busy_since": NOW - busy_for, "busy": busy, "reported_at": NOW - reported_ago}
    if keep_for is not None:
        state["keep_until"] = NOW + keep_for
    return {"name": name, "full_name": f"kim/{name}", "last_activity": iso(NOW - idle_s), "started": iso(NOW - age_s),
            "user_options": {"profile": profile} if profile else {}, "state": state}


def test_an_idle_server_is_stopped_one_timeout_after_its_last_activity_and_says_so():
    assert not decide(server(idle_s=3599), POLICY, NOW).cull
    decision = decide(server(idle_s=3600), POLICY, NOW)
    assert decision.cull and decision.reason == "idle for 1:00:00, past the timeout of 1:00:00"


def test_a_profile_has_its_own_timeout_and_the_log_names_it():
    decision = decide(server(idle_s=901, profile=GPU), POLICY, NOW)
    assert decision.cull and decision.reason.endswith(f"past the timeout of 0:15:00 (profile {GPU!r})")
    assert not decide(server(idle_s=901, profile="CPU only"), POLICY, NOW).cull  # no limits of its own


def test_a_busy_server_past_the_cap_is_stopped_even_while_active():
    assert not decide(server(profile=GPU, busy_for=4 * 3600 - 1), POLICY, NOW).cull
    decision = decide(server(profile=GPU, busy_for=4 * 3600 + 5), POLICY, NOW)
    assert decision.cull and decision.reason.startswith("busy (kernel) for 4:00:05, beyond the cap of 4:00:00")


def test_a_busy_report_the_server_stopped_repeating_is_not_believed():
    # the server went quiet (it reports every 225 s while busy, for a 900 s timeout): its old busy_since does not
    # count against the cap; its last_activity decides
    stale = server(profile=GPU, busy_for=5 * 3600, reported_ago=3 * 225 + 1, idle_s=100)
    assert not decide(stale, POLICY, NOW).cull


def test_kept_until_a_time_is_kept_past_the_idle_timeout_then_culled_when_it_passes():
    kept = decide(server(idle_s=5000, profile=GPU, keep_for=60), POLICY, NOW)
    assert not kept.cull and kept.reason == f"kept until {iso(NOW + 60)} at the user's request"
    passed = decide(server(idle_s=5000, keep_for=-1), POLICY, NOW)
    assert passed.cull and passed.reason.endswith(f"its keep-until {iso(NOW - 1)} has passed")


def test_a_keep_does_not_hold_a_runaway_loop_past_the_cap():
    decision = decide(server(profile=GPU, busy_for=5 * 3600, keep_for=3600), POLICY, NOW)
    assert decision.cull and decision.reason.startswith("busy (kernel) for 5:00:00, beyond the cap")


@pytest.mark.parametrize("state", [
    {"keep_until": float("nan")}, {"keep_until": 1e20}, {"keep_until": True}, {"keep_until": -5.0},
    {"work": {"busy": "kernel", "busy_since": -62135600400.0, "reported_at": NOW}},
    {"work": {"busy": "kernel", "busy_since": float("inf"), "reported_at": NOW}},
    {"work": {"busy": ["kernel"], "busy_since": NOW - 10, "reported_at": NOW}},
    {"work": [1, 2]}, "not a dict",
])
def test_any_record_a_spawner_could_carry_is_decided_without_an_error(state):
    model = {**server(idle_s=10), "state": state}
    assert decide(model, POLICY, NOW) == decide(server(idle_s=10), POLICY, NOW)


def test_an_undecidable_server_is_kept_and_the_culler_goes_on(caplog):
    arbiter = Arbiter(POLICY, clock=lambda: NOW)
    caplog.set_level(logging.INFO, logger="IdleCuller")
    odd = {**server(idle_s=4000), "user_options": {"profile": ["not", "hashable"]}}
    odd["user_options"] = type("Options", (dict,), {"get": lambda self, key: 1 / 0})()
    assert arbiter(inactive=None, inactive_limit=3600, server=odd) is False
    assert arbiter(inactive=None, inactive_limit=3600, server=server(idle_s=4000)) is True
    assert "undecidable (ZeroDivisionError" in caplog.text


def test_the_arbiter_remembers_a_bounded_number_of_servers():
    arbiter = Arbiter(POLICY, clock=lambda: NOW)
    arbiter.REMEMBERED = 3
    for i in range(5):
        arbiter(inactive=None, inactive_limit=3600, server=server(busy_for=60, name=f"s{i}"))
    assert list(arbiter.last_kind) == ["kim/s2", "kim/s3", "kim/s4"]


def test_the_maximum_age_wins_over_everything():
    policy = Policy(Limits(3600, max_age=8 * 3600))
    decision = decide(server(age_s=8 * 3600, keep_for=600, busy_for=60), policy, NOW)
    assert decision.cull and decision.reason.startswith("running for 8:00:00, past the maximum age of 8:00:00")


def test_the_cullers_own_timeout_is_the_default_servers_timeout():
    assert decide(server(idle_s=61), POLICY, NOW, idle_timeout=60).cull
    assert not decide(server(idle_s=61, profile=GPU), POLICY, NOW, idle_timeout=30).cull  # GPU: 900 s


def test_a_model_with_missing_or_odd_fields_is_decided_not_crashed():
    assert not decide({"name": "", "last_activity": None, "started": None}, POLICY, NOW).cull
    odd = {"name": "", "last_activity": "yesterday", "started": iso(NOW - 10), "user_options": None,
           "state": {"work": "busy", "keep_until": "soon"}}
    assert not decide(odd, POLICY, NOW).cull


def test_the_arbiter_logs_every_stop_and_each_change_of_why_a_server_is_kept(caplog):
    arbiter = Arbiter(POLICY, clock=lambda: NOW)
    caplog.set_level(logging.DEBUG, logger="IdleCuller")
    call = lambda model: arbiter(inactive=None, inactive_limit=3600, server=model)  # noqa: E731
    assert call(server(busy_for=60)) is False
    assert call(server(busy_for=90)) is False
    assert call(server(idle_s=4000)) is True
    infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert infos == [f"barehub culler: keeping kim/: busy (kernel) since {iso(NOW - 60)}",
                     "barehub culler: stopping kim/: idle for 1:06:40, past the timeout of 1:00:00"]


def test_the_policy_travels_as_json():
    assert Policy.from_json(json.loads(json.dumps(POLICY.to_json()))) == POLICY


def test_the_culler_looks_often_enough_for_the_shortest_limit_and_servers_report_within_a_timeout():
    assert POLICY.cull_every() == 300 and Policy(Limits(60), {"x": Limits(20)}).cull_every() == 10
    assert Policy(Limits(8)).cull_every() == 5
    assert POLICY.report_every(None) == 300 and POLICY.report_every(GPU) == 225
    assert Policy(Limits(60)).report_every(None) == 15


# ------------------------------------------------------------------ the config that carries it


def write(prefix, name, text):
    (prefix.config_d / name).write_text(text)


def culler(c) -> dict:
    [service] = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    return service


LIMITS = f'''
c.Barehub.idle_timeout = 120
c.Barehub.max_busy = 7200
c.Barehub.profile_limits = {{{GPU!r}: {{"idle_timeout": 40, "max_busy": 600}}}}
c.Barehub.keep_max = 3600
'''


def test_the_sites_limits_reach_the_culler_and_its_role_reads_the_servers_state(prefix):
    write(prefix, "60-culling.py", LIMITS)
    c = load_config(prefix)
    service = culler(c)
    policy = Policy.from_json(json.loads(service["environment"][POLICY_ENV]))
    assert policy == Policy(Limits(120, 7200, 0), {GPU: Limits(40, 600, 0)}, keep_max=3600)
    assert "--timeout=120" in service["command"] and "--cull-every=20" in service["command"]
    assert any(arg.startswith("--config=") and arg.endswith("idle_culler_config.py") for arg in service["command"])
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert "admin:server_state" in role["scopes"]


def test_a_fragments_own_culler_entry_and_role_get_the_limits_and_the_state_too(prefix):
    write(prefix, "60-culling.py", LIMITS + '''
from barehub.hub_config import IDLE_CULLER, idle_culler_service
c.JupyterHub.services = [idle_culler_service(60, "--cull-every=7")]
c.JupyterHub.load_roles = [{"name": IDLE_CULLER, "scopes": ["list:users", "read:servers", "delete:servers"],
                            "services": [IDLE_CULLER]}]
''')
    c = load_config(prefix)
    assert "--cull-every=7" in culler(c)["command"] and POLICY_ENV in culler(c)["environment"]
    [role] = [r for r in c.JupyterHub.load_roles if r["name"] == "idle-culler"]
    assert "admin:server_state" in role["scopes"]


@pytest.mark.parametrize("value, says", [
    ('{"GPU": {"idle_timout": 60}}', "['idle_timout'] is not a limit"),
    ('{"GPU": {"max_busy": -1}}', "['max_busy'] must be a whole number of seconds"),
    ('{"GPU": 60}', "must be a dict of limits"),
])
def test_a_wrong_profile_limit_is_named_with_its_fragments_line(prefix, value, says):
    write(prefix, "60-culling.py", f"c.Barehub.idle_timeout = 60\nc.Barehub.profile_limits = {value}\n")
    [problem] = validate(prefix)[1]
    assert problem.line == 2 and says in problem.message and "c.Barehub.profile_limits['GPU']" in problem.message


def test_the_real_culler_loads_barehubs_decision_from_its_config_file(tmp_path):
    """jupyterhub-idle-culler itself, with barehub's config file and a policy in its environment: its hook is
    barehub's Arbiter with that policy (it stops at its first hub request: no hub here)."""
    from barehub.hub_config import CULLER_CONFIG

    probe = ("import sys, jupyterhub_idle_culler as m\n"
             "app = m.IdleCuller()\napp.load_config_file(sys.argv[1])\n"
             "print(type(app.cull_arbiter_hook).__name__, app.cull_arbiter_hook.policy.profiles)")
    env = {**os.environ, POLICY_ENV: json.dumps(POLICY.to_json())}
    out = subprocess.run([sys.executable, "-c", probe, str(CULLER_CONFIG)], env=env, capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"Arbiter {{{GPU!r}: Limits(idle_timeout=900, max_busy=14400, max_age=0)}}"


# ------------------------------------------------------------------ the reports the hub takes


@pytest.mark.parametrize("body, says", [
    ({"server": "", "busy": "kernel", "busy_since": iso(NOW), "extra": 1}, "unknown field(s) extra"),
    ({"server": 7, "busy": None}, '"server" must be the server\'s name'),
    ({"busy": "gpu", "busy_since": iso(NOW)}, '"busy" must be "kernel", "cpu" or null'),
    ({"busy": "kernel"}, '"busy_since" must be an ISO-8601 time'),
    ({"busy": "kernel", "busy_since": "0001-01-01T00:00:00+01:00"}, '"busy_since" must be an ISO-8601 time'),
    ({"busy": "cpu", "busy_since": 1800000000}, '"busy_since" must be an ISO-8601 time'),
    ({"busy": None, "last_activity": "yesterday"}, '"last_activity" must be an ISO-8601 time or absent'),
])
def test_a_report_that_is_not_one_is_refused_naming_the_field(body, says):
    from tornado.web import HTTPError

    from barehub.sessions import work_report

    with pytest.raises(HTTPError) as refused:
        work_report(body)
    assert refused.value.status_code == 400 and says in refused.value.log_message


class Server(RemembersWork):
    """RemembersWork alone (its record_work needs nothing of a Spawner)."""


def test_the_hub_keeps_the_start_of_a_spell_whatever_later_reports_say():
    spawner = Server()
    spawner.record_work("kernel", NOW - 3, NOW, fresh_s=60, started=NOW - 100)
    spawner.record_work("kernel", NOW + 10, NOW + 15, fresh_s=60, started=NOW - 100)  # a report says "just now"
    spawner.record_work("cpu", NOW + 20, NOW + 30, fresh_s=60, started=NOW - 100)  # kernel -> cpu: one spell
    assert spawner.work == {"busy_since": NOW - 3, "busy": "cpu", "reported_at": NOW + 30}
    spawner.record_work(None, None, NOW + 35, fresh_s=60)  # the spell ends
    assert spawner.work == {"busy_since": None, "busy": None, "reported_at": NOW + 35}
    spawner.record_work("kernel", NOW + 36, NOW + 40, fresh_s=60, started=NOW - 100)
    assert spawner.work["busy_since"] == NOW + 36


def test_a_new_spell_begins_no_earlier_than_the_server_and_no_later_than_now():
    spawner = Server()
    spawner.record_work("kernel", NOW - 10_000, NOW, fresh_s=60, started=NOW - 100)
    assert spawner.work["busy_since"] == NOW - 100
    spawner.record_work("kernel", NOW + 500, NOW + 200, fresh_s=60, started=NOW - 100)  # 200 s quiet: a new spell
    assert spawner.work["busy_since"] == NOW + 200
