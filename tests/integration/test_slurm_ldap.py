"""The Slurm and LDAP drop-ins, as shipped, on a real slapd and a real single-node Slurm.

Runs after test_install.py (which ends with an uninstall): this module installs afresh with the
site's fragments in place, as an admin would.
"""
from __future__ import annotations

import json
import time

import pytest
import requests

from tests.integration import cluster
from tests.integration.helpers import (CPU_PROFILE, DROP_INS, GPU_PROFILE, HTTP_PORT, HUB, MEASUREMENTS, PREFIX,
                                       RequestLoop, bootstrap_cmd, filled, progress_events, put_fragment, status_code,
                                       wait_until)
from tests.integration.hubclient import HubUser


@pytest.fixture(scope="module")
def site(container):
    cluster.setup_ldap(container)
    node = cluster.setup_slurm(container)
    put_fragment(container, "30-ldap.py", filled("ldap.py", {
        '"ldap.example.org"': '"localhost"',
        "PORT = 389 ": f"PORT = {cluster.LDAP_PORT} ",
        '"/etc/ssl/certs/ca-certificates.crt"': f'"{cluster.CA_FILE}"',
        "dc=example,dc=org": cluster.BASE,
    }))
    put_fragment(container, "40-slurm.py", filled("slurm.py", {
        "https://hub.example.org": f"http://127.0.0.1:{HTTP_PORT}",  # traefik's port, as the nodes reach it
    }))
    container.run(bootstrap_cmd(), timeout=900)
    return node


@pytest.fixture(scope="module")
def base_url(site) -> str:
    return f"http://127.0.0.1:{HTTP_PORT}"


@pytest.fixture(scope="module")
def carol(base_url) -> HubUser:
    user = HubUser(base_url, "carol", cluster.USERS["carol"][0])
    start = time.monotonic()
    assert user.login().status_code == 302
    user.spawn(timeout=180, form={"profile": CPU_PROFILE})
    MEASUREMENTS["Slurm path: LDAP login + spawn to reachable through traefik (s)"] = \
        round(time.monotonic() - start, 1)
    return user


@pytest.fixture(scope="module")
def carol_token(carol) -> str:
    return carol.token()


def jobs(box, user: str) -> list[list[str]]:
    out = box.run(f"squeue -h -u {user} -o '%i %T %P %C %m'").stdout
    return [line.split() for line in out.splitlines()]


def test_ldap_user_gets_a_server_inside_a_slurm_job_with_the_chosen_profile(container, carol):
    [[job_id, state, partition, cpus, memory]] = jobs(container, "carol")
    assert (state, partition, cpus, memory) == ("RUNNING", "cpu", "2", "4G")
    out = carol.execute("import getpass, os; print(getpass.getuser(), os.environ['SLURM_JOB_ID'])")
    assert out.split() == ["carol", job_id]


def test_servers_reach_the_hub_api_through_the_proxy_and_the_hub_listens_on_loopback_only(container, carol):
    """The hub's plain-HTTP port is on no cluster interface: the job's server reports its port, its activity
    and its OAuth through traefik's public port."""
    api = carol.execute("import os; print(os.environ['JUPYTERHUB_API_URL'])").strip()
    assert api == f"http://127.0.0.1:{HTTP_PORT}/hub/api"
    listening = [line.split()[3] for line in container.run("ss -Hltn 'sport = :8081'").stdout.splitlines()]
    assert listening == ["127.0.0.1:8081"]


def test_the_server_listens_in_the_configured_port_range(carol):
    port = int(carol.execute(
        "import os, urllib.parse; print(urllib.parse.urlparse(os.environ['JUPYTERHUB_SERVICE_URL']).port)"))
    assert 40000 <= port <= 40999


def test_user_outside_the_allowed_groups_is_refused(base_url):
    r = HubUser(base_url, "dave", cluster.USERS["dave"][0]).login()
    assert r.status_code == 403 and not r.headers.get("location")


def test_wrong_password_is_refused(base_url):
    r = HubUser(base_url, "carol", "wrong-password").login()
    assert r.status_code == 403 and not r.headers.get("location")


@pytest.mark.parametrize("username", ["carol)(uid=*", "*", "carol*", "x)(|(uid=*"])
def test_usernames_that_look_like_ldap_filter_injection_are_refused(container, base_url, username):
    r = HubUser(base_url, username, cluster.USERS["carol"][0]).login()
    assert r.status_code == 403 and not r.headers.get("location")


def test_admin_group_member_is_admin_and_auth_state_holds_name_and_email(base_url, carol):
    erin = HubUser(base_url, "erin", cluster.USERS["erin"][0])
    assert erin.login().status_code == 302
    headers = {"Authorization": f"token {erin.token()}"}
    assert requests.get(f"{base_url}/hub/api/user", headers=headers, timeout=10).json()["admin"] is True
    carol_model = requests.get(f"{base_url}/hub/api/users/carol", headers=headers, timeout=10).json()
    assert carol_model["admin"] is False
    attributes = carol_model["auth_state"]["user_attributes"]
    assert attributes["cn"] == ["Carol Tester"] and attributes["mail"] == ["carol@barehub.test"]


def test_ldap_server_certificate_is_verified(container, base_url):
    """With a CA that did not sign the LDAP server's certificate, StartTLS fails and nobody logs in."""
    fragment = f"{PREFIX}/jupyterhub_config.d/30-ldap.py"
    container.run(f"cp {fragment} /root/30-ldap.py && sed -i 's|{cluster.CA_FILE}|/etc/ssl/certs/ca-certificates.crt|' "
                  f"{fragment} && systemctl reload {HUB}")
    try:
        time.sleep(2)
        wait_until(lambda: status_code(f"{base_url}/hub/health") == 200, 120)
        assert HubUser(base_url, "carol", cluster.USERS["carol"][0]).login().status_code != 302
    finally:
        container.run(f"mv /root/30-ldap.py {fragment} && systemctl reload {HUB}")
        time.sleep(2)
        wait_until(lambda: status_code(f"{base_url}/hub/health") == 200, 120)


def test_hub_restart_keeps_the_job_and_the_server_reachable(container, base_url, carol_token):
    [[job_id, *_]] = jobs(container, "carol")
    container.run(f"systemctl restart {HUB}")
    wait_until(lambda: status_code(f"{base_url}/hub/health") == 200, 120)
    headers = {"Authorization": f"token {carol_token}"}
    wait_until(lambda: status_code(f"{base_url}/user/carol/api/status", headers=headers) == 200, 60)
    user = requests.get(f"{base_url}/hub/api/user", headers=headers, timeout=10).json()
    assert user["servers"][""]["ready"] is True
    assert [j[0] for j in jobs(container, "carol")] == [job_id]


def test_stopping_the_server_cancels_the_job(container, base_url, carol_token):
    r = requests.delete(f"{base_url}/hub/api/users/carol/server", headers={"Authorization": f"token {carol_token}"},
                        timeout=60)
    assert r.status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)


def test_user_options_sent_to_the_rest_api_cannot_bypass_the_profiles(container, base_url, carol_token):
    """A user calling the REST API directly: batchspawner merges user_options into the batch script, so an
    option sent there (here a job comment, it could be --account or --partition) would reach sbatch."""
    url, headers = f"{base_url}/hub/api/users/carol/server", {"Authorization": f"token {carol_token}"}
    for body in ({"options": "--comment=bypassed"}, {"partition": "cpu", "gres": "gpu:8"},
                 {"profile": CPU_PROFILE, "options": "--comment=bypassed"}, {"profile": "--comment=bypassed"}):
        r = requests.post(url, json=body, headers=headers, timeout=60)
        assert r.status_code == 400 and "choose one of the profiles" in r.json()["message"], (body, r.text)
    assert jobs(container, "carol") == []
    r = requests.post(url, json={"profile": CPU_PROFILE}, headers=headers, timeout=60)  # what the API may do
    assert r.status_code in (201, 202), r.text
    wait_until(lambda: [j[1:] for j in jobs(container, "carol")] == [["RUNNING", "cpu", "2", "4G"]], 120)
    assert requests.delete(url, headers=headers, timeout=60).status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)


def request_server(base_url: str, token: str, may_fail: bool = False, profile: str = CPU_PROFILE) -> None:
    """Start carol's server through the REST API. A spawn that fails within JupyterHub's slow_spawn_timeout
    (10 s) answers 500 here; the spawn page then shows why."""
    r = requests.post(f"{base_url}/hub/api/users/carol/server", json={"profile": profile},
                      headers={"Authorization": f"token {token}"}, timeout=60)
    assert r.status_code in ((201, 202, 500) if may_fail else (201, 202)), r.text


def test_the_spawn_page_shows_slurms_reason_while_the_job_waits_and_cancel_scancels_it(container, base_url,
                                                                                     carol_token):
    blocker = container.run("runuser -u erin -- sbatch --parsable -c 2 --mem=100M -o /dev/null "
                            "--wrap 'sleep 600'").stdout.strip()  # the node's 2 CPUs are taken
    try:
        wait_until(lambda: [j[1] for j in jobs(container, "erin")] == ["RUNNING"], 60)
        request_server(base_url, carol_token)
        events = progress_events(base_url, carol_token, timeout=60, user="carol",
                                 until=lambda e: "Waiting in Slurm's queue (PENDING, Resources)" in e.get("message", ""))
        assert "in use; it starts when they are free" in events[-1]["message"]
        [[_, state, *_]] = jobs(container, "carol")
        assert state == "PENDING"
        start = time.monotonic()
        r = requests.delete(f"{base_url}/hub/api/users/carol/server", headers={"Authorization": f"token {carol_token}"},
                            timeout=60)  # the user cancels the pending spawn
        assert r.status_code in (202, 204), r.text
        wait_until(lambda: jobs(container, "carol") == [], 60)
        MEASUREMENTS["Slurm: a pending spawn cancelled, job gone from the queue after (s)"] = \
            round(time.monotonic() - start, 1)
    finally:
        container.run(f"scancel {blocker}")
        wait_until(lambda: jobs(container, "erin") == [], 60)


def test_a_server_that_dies_at_start_is_reported_at_once_with_slurms_state(container, base_url, carol_token):
    """A broken config in the user's home: the job starts, reports its port, and its server exits."""
    container.run("mkdir -p /home/carol/.jupyter && echo 'import os; os._exit(3)' > "
                  "/home/carol/.jupyter/jupyter_server_config.py && chown -R carol: /home/carol/.jupyter")
    try:
        start = time.monotonic()
        request_server(base_url, carol_token, may_fail=True)
        events = progress_events(base_url, carol_token, until=lambda e: e.get("failed"), timeout=120, user="carol")
        elapsed = time.monotonic() - start
        MEASUREMENTS["Slurm: server dies at start, spawn request to the user's error (s)"] = round(elapsed, 1)
        message = events[-1]["message"]
        assert "ended before the server started (FAILED, reason: NonZeroExitCode)" in message, message
        assert "/home/carol/.jupyterhub_slurm_" in message and elapsed < 60  # not the 300 s start timeout
    finally:
        container.run("rm -rf /home/carol/.jupyter")
    assert jobs(container, "carol") == []


def failed_spawn_message(base_url: str, token: str, profile: str) -> tuple[str, float]:
    start = time.monotonic()
    request_server(base_url, token, may_fail=True, profile=profile)
    events = progress_events(base_url, token, until=lambda e: e.get("failed"), timeout=120, user="carol")
    return events[-1]["message"], time.monotonic() - start


def test_a_profile_slurm_rejects_gives_the_user_sbatchs_message_at_once(container, base_url, carol_token):
    """This one-node cluster has no GPU gres (nor a "gpu" partition): sbatch refuses the shipped GPU profile."""
    message, elapsed = failed_spawn_message(base_url, carol_token, GPU_PROFILE)
    assert message == "Spawn failed: sbatch: error: Invalid generic resource (gres) specification", message
    assert elapsed < 30
    assert jobs(container, "carol") == []


def test_a_profile_whose_partition_is_down_is_refused_at_once_and_its_job_cancelled(container, base_url,
                                                                                    carol_token):
    container.run("scontrol update PartitionName=cpu State=DOWN")
    try:
        message, elapsed = failed_spawn_message(base_url, carol_token, CPU_PROFILE)
        MEASUREMENTS["Slurm: a profile whose partition is down, spawn request to the user's error (s)"] = \
            round(elapsed, 1)
        assert "Slurm will not start job" in message and "PartitionDown" in message, message
        assert "the partition is down" in message and elapsed < 30
        wait_until(lambda: jobs(container, "carol") == [], 30)
    finally:
        container.run("scontrol update PartitionName=cpu State=UP")


def test_a_job_cancelled_outside_the_hub_is_noticed_and_shown_as_stopped(container, base_url, carol, carol_token):
    carol.spawn(timeout=180, form={"profile": CPU_PROFILE})
    [[job_id, *_]] = jobs(container, "carol")
    container.run(f"scancel {job_id}")  # an admin, or the user on the command line
    headers = {"Authorization": f"token {carol_token}"}
    waited = wait_until(lambda: not requests.get(f"{base_url}/hub/api/user", headers=headers, timeout=10)
                        .json()["servers"], 90, interval=1)
    MEASUREMENTS["Slurm: a job scancelled outside the hub, shown as stopped after (s)"] = round(waited, 1)


def test_slurmctld_down_for_a_minute_leaves_servers_alone_fails_new_spawns_clearly_and_recovers(
        container, base_url, carol, carol_token):
    carol.spawn(timeout=180, form={"profile": CPU_PROFILE})
    erin = HubUser(base_url, "erin", cluster.USERS["erin"][0])
    assert erin.login().status_code == 302
    erin_token = erin.token()
    headers = {"Authorization": f"token {erin_token}"}
    with RequestLoop(f"{base_url}/user/carol/api/status", {"Authorization": f"token {carol_token}"}) as loop:
        container.run("systemctl stop slurmctld")
        down = time.monotonic()
        try:
            r = requests.post(f"{base_url}/hub/api/users/erin/server", json={"profile": CPU_PROFILE}, headers=headers,
                              timeout=120)
            assert r.status_code in (201, 202, 500), r.text
            events = progress_events(base_url, erin_token, until=lambda e: e.get("failed"), timeout=120, user="erin")
            assert "Unable to contact slurm controller" in events[-1]["message"], events[-1]
            MEASUREMENTS["Slurm: slurmctld down, a new spawn's error after (s)"] = round(time.monotonic() - down, 1)
            time.sleep(max(0.0, 60 - (time.monotonic() - down)))  # the hub polls carol's job meanwhile (every 30 s)
            assert status_code(f"{base_url}/hub/health") == 200
        finally:
            container.run("systemctl start slurmctld")
    assert loop.failed == 0, loop.failures  # her server never noticed
    assert requests.get(f"{base_url}/hub/api/user", headers={"Authorization": f"token {carol_token}"},
                        timeout=10).json()["servers"][""]["ready"] is True
    requests.delete(f"{base_url}/hub/api/users/carol/server", headers={"Authorization": f"token {carol_token}"},
                    timeout=60)  # this one-node cluster runs one such job at a time
    wait_until(lambda: jobs(container, "carol") == [], 60)
    erin.spawn(timeout=180, form={"profile": CPU_PROFILE})  # all recovered: a new job runs
    assert len(jobs(container, "erin")) == 1
    requests.delete(f"{base_url}/hub/api/users/erin/server", headers=headers, timeout=60)
    wait_until(lambda: jobs(container, "erin") == [], 60)


def test_idle_culler_stops_an_idle_slurm_backed_server(container, base_url, carol):
    put_fragment(container, "60-idle-culler.py", filled("idle-culler.py", {
        "c.Barehub.idle_timeout = 2 * 3600": "c.Barehub.idle_timeout = 20"}))  # it checks every 10 s
    container.run(f"systemctl reload {HUB}")
    time.sleep(2)
    wait_until(lambda: status_code(f"{base_url}/hub/health") == 200, 120)
    carol.spawn(timeout=180, form={"profile": CPU_PROFILE})
    assert len(jobs(container, "carol")) == 1
    start = time.monotonic()
    wait_until(lambda: jobs(container, "carol") == [], 150, interval=1)
    MEASUREMENTS["idle culler (timeout 20 s, every 10 s): idle Slurm job cancelled after (s)"] = \
        round(time.monotonic() - start, 1)
    log = container.run(f"journalctl -u {HUB} --no-pager -n 400").stdout
    assert "Culling server carol" in log or "culling server carol" in log.lower()


def test_check_reports_the_site_fragments_as_ok(container):
    out = container.run(f"barehub check --prefix {PREFIX}").stdout
    assert "config OK: 3 fragment(s)" in out
    assert json.loads(container.run(f"barehub status --json --prefix {PREFIX}").stdout)["units"]


def test_non_root_hub_spawns_slurm_jobs_with_exactly_the_documented_sudoers_rule(container, base_url):
    text = (DROP_INS / "slurm.py").read_text().split("/etc/sudoers.d/barehub-slurm", 1)[1]
    rule = "\n".join(line[len("#   "):] for line in text.splitlines() if line.startswith("#   ")) + "\n"
    container.run("id jupyterhub || useradd --system --create-home --home-dir /var/lib/jupyterhub jupyterhub")
    container.run("getent group jupyterhub-users || groupadd jupyterhub-users; usermod -aG jupyterhub-users carol")
    container.run("cat > /etc/sudoers.d/barehub-slurm && chmod 0440 /etc/sudoers.d/barehub-slurm", input=rule)
    container.run("visudo -cf /etc/sudoers.d/barehub-slurm")
    assert "SETENV" not in rule and "setenv" not in rule  # the hub user may not set the users' environment:
    as_hub = "runuser -u jupyterhub -- sudo -n -u carol"
    refused = container.run(f"{as_hub} LD_PRELOAD=/tmp/planted.so /usr/bin/squeue", check=False)
    assert refused.returncode != 0 and "not allowed to set" in refused.stderr, refused.stderr
    refused = container.run("runuser -u jupyterhub -- sudo -n -E -u carol /usr/bin/squeue", check=False)
    assert refused.returncode != 0 and "not allowed to preserve the environment" in refused.stderr, refused.stderr
    assert container.run(f"{as_hub} /usr/bin/squeue -h -u carol", check=False).returncode == 0  # what it needs
    container.run(f"rm -f {PREFIX}/jupyterhub_config.d/60-idle-culler.py")  # its 20 s timeout is for the test above
    container.run(bootstrap_cmd("--hub-user", "jupyterhub", "--hub-sudo", "yes"), timeout=900)  # as slurm.py says
    assert container.run(f"ps -o user= -p {container.main_pid(HUB)}").stdout.strip() == "jupyterhub"
    user = HubUser(base_url, "carol", cluster.USERS["carol"][0])
    assert user.login().status_code == 302
    user.spawn(timeout=180, form={"profile": CPU_PROFILE})
    [[job_id, state, *_]] = jobs(container, "carol")
    assert state == "RUNNING"
    assert user.execute("import getpass, os; print(getpass.getuser(), os.environ['SLURM_JOB_ID'])").split() == \
        ["carol", job_id]
    r = requests.delete(f"{base_url}/hub/api/users/carol/server",
                        headers={"Authorization": f"token {user.token()}"}, timeout=60)
    assert r.status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)
