"""The Slurm and LDAP drop-ins, as shipped, on a real slapd and a real single-node Slurm: LDAP users' servers as
Slurm jobs, the REST API and the profiles, a non-root hub with the documented sudoers rule, the idle culler.
What Slurm does across nodes (queue waits, dead jobs, restarts, slurmctld away, the doctor, a browser) is in
test_slurm_cluster.py, on a login node and two compute nodes.

Runs after test_install.py (which ends with an uninstall): this module installs afresh with the
site's fragments in place, as an admin would.
"""
from __future__ import annotations

import json
import time

import pytest

from tests.integration import cluster
from tests.integration.helpers import (BASE_URL, CPU_PROFILE, DROP_INS, GPU_PROFILE, HUB, MEASUREMENTS, PREFIX,
                                       bootstrap_cmd, exposure, filled, put_fragment, status_code, wait_until)
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
        "https://hub.example.org": BASE_URL,  # traefik's port, as the nodes reach it
    }))
    container.run(bootstrap_cmd(), timeout=900)
    return node


@pytest.fixture(scope="module")
def base_url(site) -> str:
    return BASE_URL


@pytest.fixture(scope="module")
def carol(base_url) -> HubUser:
    user = HubUser(base_url, "carol", cluster.USERS["carol"][0])
    start = time.monotonic()
    assert user.login().status_code == 302
    user.spawn(timeout=180, form={"profile": CPU_PROFILE})
    MEASUREMENTS["Slurm path: LDAP login + spawn to reachable through traefik (s)"] = \
        round(time.monotonic() - start, 1)
    return user


def jobs(box, user: str) -> list[list[str]]:
    out = box.run(f"squeue -h -u {user} -o '%i %T %P %C %m'").stdout
    return [line.split() for line in out.splitlines()]


def test_ldap_user_gets_a_server_inside_a_slurm_job_with_the_chosen_profile(container, carol):
    [[job_id, state, partition, cpus, memory]] = jobs(container, "carol")
    assert (state, partition, cpus, memory) == ("RUNNING", "cpu", "2", "4G")
    out = carol.execute("import getpass, os; print(getpass.getuser(), os.environ['SLURM_JOB_ID'])")
    assert out.split() == ["carol", job_id]


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
    assert erin.api("GET", "user", timeout=10).json()["admin"] is True
    carol_model = erin.api("GET", "users/carol", timeout=10).json()
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


def test_stopping_the_server_cancels_the_job(container, carol):
    r = carol.api("DELETE", "users/carol/server")
    assert r.status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)


def test_user_options_sent_to_the_rest_api_cannot_bypass_the_profiles(container, carol):
    """A user calling the REST API directly: batchspawner merges user_options into the batch script, so an
    option sent there (here a job comment, it could be --account or --partition) would reach sbatch."""
    for body in ({"options": "--comment=bypassed"}, {"partition": "cpu", "gres": "gpu:8"},
                 {"profile": CPU_PROFILE, "options": "--comment=bypassed"}, {"profile": "--comment=bypassed"}):
        r = carol.api("POST", "users/carol/server", json=body)
        assert r.status_code == 400 and "choose one of the profiles" in r.json()["message"], (body, r.text)
    assert jobs(container, "carol") == []
    r = carol.api("POST", "users/carol/server", json={"profile": CPU_PROFILE})  # what the API may do
    assert r.status_code in (201, 202), r.text
    wait_until(lambda: [j[1:] for j in jobs(container, "carol")] == [["RUNNING", "cpu", "2", "4G"]], 120)
    assert carol.api("DELETE", "users/carol/server").status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)


def test_a_profile_slurm_rejects_gives_the_user_sbatchs_message_at_once(container, carol):
    """This one-node cluster has no GPU gres (nor a "gpu" partition): sbatch refuses the shipped GPU profile."""
    message, elapsed = carol.failed_spawn(GPU_PROFILE)
    assert message == "Spawn failed: sbatch: error: Invalid generic resource (gres) specification", message
    assert elapsed < 30
    assert jobs(container, "carol") == []


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
    # README's figure: no system call filters with sudo
    assert exposure(container, HUB, "--hub-user --hub-sudo yes hub") <= 6.1
    user = HubUser(base_url, "carol", cluster.USERS["carol"][0])
    assert user.login().status_code == 302
    user.spawn(timeout=180, form={"profile": CPU_PROFILE})
    [[job_id, state, *_]] = jobs(container, "carol")
    assert state == "RUNNING"
    assert user.execute("import getpass, os; print(getpass.getuser(), os.environ['SLURM_JOB_ID'])").split() == \
        ["carol", job_id]
    r = user.api("DELETE", "users/carol/server")
    assert r.status_code in (202, 204)
    wait_until(lambda: jobs(container, "carol") == [], 60)
