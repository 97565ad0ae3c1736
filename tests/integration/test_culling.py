"""The real culler (jupyterhub-idle-culler with barehub's decision) on short timeouts, against real work: a cell
that sleeps with no browser connected, a runaway loop past a profile's cap, a "keep until" a user asked for, a
terminal building something (CPU in the server's own cgroup), and an idle server for contrast. Each runs as its
own user at the same time, so the whole story takes about two minutes; the culler's log lines must say why.

Uses the session's install (as test_browser.py does) and the shipped local-limits drop-in for profiles; leaves
the users' servers stopped and the fragments removed.
"""
from __future__ import annotations

import contextlib
import time

import pytest

from barehub import utc_time

from tests.integration.helpers import HUB, MEASUREMENTS, PASSWORDS, PREFIX, add_local_user, wait_until
from tests.integration.hubclient import HubUser

CONFIG_D = f"{PREFIX}/jupyterhub_config.d"
IDLE_S, CAP_S, KEEP_S, WORK_S = 30, 40, 60, 80  # the profiles' timeout and cap; how long pia keeps; how long work runs
POLL_S = 10  # the hub's poll of the servers' units (JupyterHub's default, 30 s, is what sites run)
LIMITS = f'''
c.Barehub.profile_limits = {{"small": {{"idle_timeout": {IDLE_S}}},
                            "medium": {{"idle_timeout": {IDLE_S}, "max_busy": {CAP_S}}}}}
c.Spawner.poll_interval = {POLL_S}
'''
# who does what, with which local-limits profile
PEOPLE = {"nora": "small", "omar": "medium", "pia": "small", "quinn": "small", "rita": "small"}


@pytest.fixture(scope="module")
def people(container, base_url):
    for name in PEOPLE:
        add_local_user(container, name)
    container.run(f"cp /mnt/src/jupyterhub_config.d/local-limits.py {CONFIG_D}/30-local-limits.py")
    container.run(f"cat > {CONFIG_D}/60-culling.py", input=LIMITS)
    container.run(f"systemctl reload {HUB}")
    users = {}
    for name, profile in PEOPLE.items():
        users[name] = HubUser(base_url, name, PASSWORDS[name])
        assert users[name].login().status_code == 302
        users[name].spawn(form={"profile": profile})
        active_now(users.values())  # a spawn on a busy machine can take longer than the timeout: each story starts
    yield users                     # at the test, not at its own spawn
    for user in users.values():
        user.api("DELETE", f"users/{user.name}/server")
    container.run(f"rm -f {CONFIG_D}/30-local-limits.py {CONFIG_D}/60-culling.py && systemctl reload {HUB}")


def active_now(users) -> None:
    """Each user tells the hub she used her server just now (JupyterHub's activity API, her own token)."""
    now = utc_time.iso(time.time())
    for user in users:
        r = user.api("POST", f"users/{user.name}/activity", json={"last_activity": now,
                                                                  "servers": {"": {"last_activity": now}}})
        assert r.status_code == 200, r.text


def running(user: HubUser) -> bool:
    r = user.api("GET", f"users/{user.name}")
    return r.status_code == 200 and "" in r.json().get("servers", {})


def last_activity(user: HubUser) -> str | None:
    return user.api("GET", f"users/{user.name}").json()["servers"].get("", {}).get("last_activity")


def test_the_culler_keeps_work_and_stops_idleness_saying_why(container, people):
    nora, omar, pia, quinn, rita = (people[name] for name in PEOPLE)
    # a server's own token (code in rita's server has it) reports for that server only: not for another of hers,
    # not for another user's
    out = rita.execute(
        "import os, requests\n"
        "api, auth = os.environ['JUPYTERHUB_API_URL'], {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
        "report = lambda user, server: requests.post(f'{api}/users/{user}/work', headers=auth, timeout=30, json={\n"
        "    'server': server, 'busy': 'kernel', 'busy_since': '2026-01-01T00:00:00Z'}).status_code\n"
        "print(report('rita', ''), report('rita', 'other'), report('nora', ''))")
    own, her_other, someone_elses = out.split()
    assert (own, her_other) == ("200", "403") and someone_elses in ("403", "404"), out  # (404: not even seen)
    since = int(time.time())
    # nora: a silent cell, no browser; the hub's last_activity moves within seconds
    before = last_activity(nora)
    nora.start_cell(f"import time; time.sleep({WORK_S})")
    start = time.monotonic()
    moved = wait_until(lambda: last_activity(nora) != before, 30, interval=0.25)
    MEASUREMENTS["culling: a kernel going busy -> the hub's last_activity moves (s)"] = round(moved, 1)
    # omar: a runaway loop in a profile capped at CAP_S (niced: the machine has 2 cores)
    omar.start_cell("import os; os.nice(19)\nwhile True: pass")
    # quinn: a build in a terminal, no kernel at all: CPU in the server's unit
    quinn.start_in_terminal(f"nice -n 19 timeout {WORK_S} sh -c 'while :; do :; done'")
    # pia: nothing running, kept until KEEP_S from now
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + KEEP_S))
    kept = pia.api("PATCH", "users/pia/sessions/", json={"keep_until": until})
    assert kept.status_code == 200 and kept.json()["keep_until"] == until, kept.text
    # rita: idle; (her own token may not keep someone else's server)
    assert rita.api("PATCH", "users/pia/sessions/", json={"keep_until": until}).status_code in (403, 404)

    stopped: dict[str, float] = {}
    while len(stopped) < len(PEOPLE) and time.monotonic() - start < WORK_S + IDLE_S + 60:
        for name, user in people.items():
            if name not in stopped and not running(user):
                stopped[name] = round(time.monotonic() - start, 1)
        time.sleep(1)
    MEASUREMENTS["culling: seconds to each stop (timeout 30, cap 40, kept 60, work 80)"] = str(stopped)
    assert set(stopped) == set(PEOPLE), f"still running after {WORK_S + IDLE_S + 60} s: {set(PEOPLE) - set(stopped)}"
    assert stopped["rita"] <= IDLE_S + 30  # idle: one timeout, one look of the culler, one report
    assert CAP_S <= stopped["omar"] <= CAP_S + 35  # busy all along, stopped at the cap (+ a check, a look)
    assert KEEP_S <= stopped["pia"] <= KEEP_S + 30  # kept past her timeout, stopped once the keep passed
    for name in ("nora", "quinn"):  # working past the timeout, then stopped one timeout after the work ended
        assert WORK_S + IDLE_S - 15 <= stopped[name] <= WORK_S + IDLE_S + 45, (name, stopped)

    journal = container.run(f"journalctl -u {HUB} --no-pager --since @{since}", check=False).stdout
    said = [line.split("barehub culler: ", 1)[1] for line in journal.splitlines() if "barehub culler: " in line]
    assert any(s.startswith("stopping rita/: idle for") and "past the timeout of 0:00:30 (profile 'small')" in s
               for s in said), said
    assert any(s.startswith("stopping omar/: busy (kernel) for 0:0") and
               s.endswith("beyond the cap of 0:00:40 (profile 'medium')") for s in said), said
    assert f"keeping pia/: kept until {until} at the user's request" in said, said
    assert any(s.startswith("stopping pia/: idle for") and s.endswith(f"its keep-until {until} has passed")
               for s in said), said
    assert any(s.startswith("keeping nora/: busy (kernel) since") for s in said), said
    assert any(s.startswith("keeping quinn/: busy (cpu) since") for s in said), said
    for name in ("nora", "quinn"):
        assert any(s.startswith(f"stopping {name}/: idle for") for s in said), said


# every systemctl the hub runs, logged (the hub's PATH has its env's bin first; /usr is read-only here); others
# pass through
SYSTEMCTL_LOG = "barehub-test-systemctl"
SYSTEMCTL_WRAPPER_PATH = f"{PREFIX}/conda/bin/systemctl"
SYSTEMCTL_WRAPPER = f"""#!/bin/sh
case "$(tr '\\0' ' ' < /proc/$PPID/cmdline)" in *barehub.hub*) logger -t {SYSTEMCTL_LOG} -- "$*";; esac
exec /usr/bin/systemctl "$@"
"""


@contextlib.contextmanager
def hubs_systemctl_calls_logged(container):
    container.run(f"cat > {SYSTEMCTL_WRAPPER_PATH} && chmod 755 {SYSTEMCTL_WRAPPER_PATH}", input=SYSTEMCTL_WRAPPER)
    try:
        yield
    finally:
        container.run(f"rm -f {SYSTEMCTL_WRAPPER_PATH}")


def hubs_systemctl_calls(container, since: float) -> list[str]:
    return container.run(f"journalctl -t {SYSTEMCTL_LOG} --since @{since:.3f} -o cat --no-pager").stdout.splitlines()


def test_several_servers_polls_make_one_systemctl_per_interval_and_a_unit_killed_outside_is_noticed(container, people):
    """Upstream's poll ran `systemctl is-active UNIT` per server per poll: here one `systemctl list-units` asks for
    all the server units, at most twice per poll interval; a unit killed outside the hub is noticed within one, and
    why it ended (asked of it alone) is shown."""
    users = [people[name] for name in ("nora", "omar", "pia")]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    for user in users:  # (kept from the culler meanwhile)
        user.spawn(form={"profile": "small"})
        assert user.api("PATCH", f"users/{user.name}/sessions/", json={"keep_until": until}).status_code == 200
    with hubs_systemctl_calls_logged(container):
        since = time.time()
        time.sleep(2 * POLL_S)
        calls = hubs_systemctl_calls(container, since)
        listed = [c.split(" -- ", 1)[-1].split() for c in calls if c.startswith("list-units")]
        # the usage book's once-a-minute list of all server units (usage_ledger.USER_UNITS_GLOB) is not a poll
        polls = [units for units in listed if units != ["jupyter-*.service"]]
        MEASUREMENTS["culling: 3 servers, the hub's systemctl calls per poll interval (upstream: 3)"] = len(calls) / 2
        assert 1 <= len(polls) <= 2 * 2 + 1 and not [c for c in calls if "is-active" in c], calls
        assert len(listed) - len(polls) <= 1, calls  # the book's: at most one in 2 * POLL_S
        assert all(f"jupyter-{u.name}-singleuser.service" in units for units in polls for u in users), "\n".join(calls)
        container.run("systemctl kill --signal=SIGKILL jupyter-nora-singleuser")  # an admin, the OOM killer
        waited = wait_until(lambda: not running(people["nora"]), 30, interval=0.5)
    MEASUREMENTS["culling: a server unit killed outside the hub, noticed after (s)"] = round(waited, 1)
    assert waited <= POLL_S + 3
    sessions = {s["name"]: s for s in people["nora"].api("GET", "users/nora/sessions").json()["sessions"]}
    assert sessions[""]["why"].startswith("the server was killed by a signal (signal 9)"), sessions[""]
