"""The shipped slurm.py drop-in, only its site values changed, on a real Slurm cluster: the hub and traefik on
a login node, users' servers as jobs on two compute nodes (one with GPUs), each node a booted systemd
container in its own network namespace (tests/integration/slurm_cluster.py). Every client here runs on the
login node's network, as users' browsers reach the login node.
"""
from __future__ import annotations

import json
import math
import os
import re
import statistics
import shutil
import time

import pytest
import requests
from selenium.webdriver.common.by import By

from testbed.code_server import code_server_build
from tests.integration.helpers import (CPU_PROFILE, DROP_INS, GPU_PROFILE, HTTP_PORT, HUB, MEASUREMENTS, PREFIX, REPO,
                                       RequestLoop, bootstrap_cmd, filled, put_fragment, status_code, wait_until)
from tests.integration.browser import LAB, Browser, choose_profile, run_cell
from tests.integration.hubclient import HubUser
from tests.integration.slurm_cluster import ADDRESSES, USERS, SlurmCluster
from tests.integration.vscode import (another_user_cannot_connect, log_in, refused_to_another_user, rss_mib,
                                      socket_only, vscode_from_the_launcher)

SHORT_PROFILE = "Short: 1 CPU, 1 GB, 1 minute"
HUB_URL = f"http://login:{HTTP_PORT}"  # slurm.py's HUB_URL: the hub's public URL as the nodes reach it
LOGIN_NODE_URL = f"http://{ADDRESSES['login']}:{HTTP_PORT}"  # the same, as this test's clients on the login node use it
POLL_S = 10  # the hub's poll interval here (JupyterHub's default, 30 s, is what sites run)


@pytest.fixture(scope="module")
def hpc(tmp_path_factory, wheelhouse):
    if os.geteuid() != 0:
        pytest.skip("the cluster needs root (network namespaces, systemd-nspawn)")
    cluster = SlurmCluster(f"bh{os.getpid()}", tmp_path_factory.mktemp("cluster"),
                           {str(REPO): "/mnt/src", str(wheelhouse): "/mnt/wheelhouse"})
    try:
        MEASUREMENTS["Slurm cluster: 3 nodes booted, munge + Slurm up (s)"] = round(cluster.start(), 1)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def hub(hpc):
    """barehub installed on the login node with the shipped slurm.py; this thread then runs on the login node's
    network."""
    put_fragment(hpc.login, "40-slurm.py", filled("slurm.py", {
        "https://hub.example.org": HUB_URL,
        "PROFILES = {\n": "PROFILES = {\n" + f'    "{SHORT_PROFILE}": ' + '{"partition": "cpu", "nprocs": "1", "memory": "1G", '
                          '"runtime": "1"},\n'}))  # a site's profile with a 1-minute time limit
    put_fragment(hpc.login, "20-named-servers.py", filled("named-servers.py", {}))
    # VS Code beside JupyterLab: the drop-in, and code-server where `barehub apps install vscode` puts it, on the
    # shared prefix (a copy of the tests' build: the nodes have no network)
    put_fragment(hpc.login, "60-apps.py", (DROP_INS / "apps.py").read_text())
    shutil.copytree(code_server_build(), hpc.shared_prefix / "apps" / "code-server", symlinks=True)
    # the hub notices a job that ended within 10 s (JupyterHub's default poll, 30 s, is what sites run)
    put_fragment(hpc.login, "45-test-poll.py", f"c.SlurmSpawner.poll_interval = {POLL_S}\n")
    start = time.monotonic()
    hpc.login.run(bootstrap_cmd(), timeout=900)
    MEASUREMENTS["Slurm cluster: barehub installed on the login node (s)"] = round(time.monotonic() - start, 1)
    with hpc.on_login_node():
        yield LOGIN_NODE_URL


def user(name: str) -> HubUser:
    hub_user = HubUser(LOGIN_NODE_URL, name, USERS[name][1])
    assert hub_user.login().status_code == 302
    return hub_user


def stop_server(hpc: SlurmCluster, hub_user: HubUser) -> None:
    assert hub_user.api("DELETE", f"users/{hub_user.name}/server").status_code in (202, 204)
    wait_until(lambda: hpc.jobs(hub_user.name) == [], 60)


def traefik_targets(hpc: SlurmCluster) -> dict[str, str]:
    """What traefik itself says it forwards each user's server to (its API, on the login node's loopback)."""
    out = hpc.login.run(f"curl -sf -u jupyterhub:$(cat {PREFIX}/state/traefik_api_password) "
                        "http://127.0.0.1:8099/api/http/services").stdout
    return {s["name"]: s["loadBalancer"]["servers"][0]["url"] for s in json.loads(out) if "loadBalancer" in s}


def test_a_server_runs_as_a_job_on_a_compute_node_and_traefik_forwards_to_that_node(hpc, hub):
    durations = []
    for _ in range(3):  # login -> JupyterLab on the compute node, three times
        kim = HubUser(LOGIN_NODE_URL, "kim", USERS["kim"][1])
        start = time.monotonic()
        assert kim.login().status_code == 302
        kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
        durations.append(time.monotonic() - start)
        [job] = hpc.jobs("kim")
        assert (job["state"], job["partition"], job["node"], job["cpus"], job["memory"]) == \
            ("RUNNING", "cpu", "cn1", "2", "4G")
        out = kim.execute("import getpass, os, socket; print(getpass.getuser(), socket.gethostname(), "
                          "os.environ['SLURM_JOB_ID'], os.environ['JUPYTERHUB_API_URL'], "
                          "os.environ['JUPYTERHUB_SERVICE_URL'])")
        assert out.split()[:4] == ["kim", "cn1", job["id"], f"{HUB_URL}/hub/api"]
        port = int(out.split()[4].rsplit(":", 1)[1].split("/")[0])
        assert 40000 <= port <= 40999
        [target] = [url for url in traefik_targets(hpc).values() if url.endswith(f":{port}")]
        assert target == f"http://cn1:{port}"
        assert hpc.login.run("getent hosts cn1").stdout.split()[0] == ADDRESSES["cn1"]
        assert f"0.0.0.0:{port}" in hpc.nodes["cn1"].run(f"ss -Hltn 'sport = :{port}'").stdout  # the server, on cn1
        stop_server(hpc, kim)
    MEASUREMENTS["Slurm cluster: login -> JupyterLab on a compute node, median of 3 (s)"] = \
        round(statistics.median(durations), 1)


def test_the_hub_listens_on_the_login_nodes_loopback_only(hpc, hub):
    listening = [line.split()[3] for line in hpc.login.run("ss -Hltn 'sport = :8081'").stdout.splitlines()]
    assert listening == ["127.0.0.1:8081"]
    assert status_code(f"http://{ADDRESSES['login']}:8081/hub/login") is None  # not on the cluster's network


def test_the_gpu_profile_runs_on_the_gpu_node_with_a_gpu(hpc, hub):
    leo = user("leo")
    leo.spawn(timeout=180, form={"profile": GPU_PROFILE})
    [job] = hpc.jobs("leo")
    assert (job["state"], job["partition"], job["node"], job["cpus"], job["memory"]) == \
        ("RUNNING", "gpu", "cn2", "8", "32G")
    assert "gpu:1" in job["gres"]
    out = leo.execute("import os, socket; print(socket.gethostname(), os.environ['CUDA_VISIBLE_DEVICES'], "
                      "os.environ['SLURM_GPUS_ON_NODE'])")
    assert out.split() == ["cn2", "0", "1"]
    stop_server(hpc, leo)


def barehub_usage(hpc: SlurmCluster, *args: str):
    return hpc.login.run(f"barehub usage --prefix {PREFIX} --source slurm " + " ".join(args), check=False, timeout=120)


def accounted_end(hpc: SlurmCluster, job_id: str) -> tuple[str, int]:
    """The job's End and ElapsedRaw in Slurm's accounting database ("Unknown" until slurmctld sent its end)."""
    out = hpc.login.run(f"sacct -n -P -X -j {job_id} -o End,ElapsedRaw", check=False).stdout.strip()
    end, _, elapsed = out.partition("|")
    return end, int(elapsed or 0)


def test_usage_from_slurms_accounting_shows_a_gpu_servers_job_with_its_gpu_hours_memory_group_and_profile(hpc, hub):
    """leo's GPU-profile server runs (a cell holds 200 MiB for 5 s) and is stopped; `barehub usage` reads her job
    from slurmdbd (MariaDB) through sacct: 1 GPU x the job's elapsed time, by user, by her group, by profile."""
    leo = user("leo")
    leo.spawn(timeout=180, form={"profile": GPU_PROFILE})
    [job] = hpc.jobs("leo")
    leo.execute("import time; x = bytearray(200 * 1024 ** 2); time.sleep(5)")  # jobacct_gather samples every 2 s
    stop_server(hpc, leo)
    wait_until(lambda: accounted_end(hpc, job["id"])[0] not in ("", "Unknown"), 30)
    elapsed = accounted_end(hpc, job["id"])[1]
    start = time.monotonic()
    proc = barehub_usage(hpc, "--json", "--user", "leo")
    MEASUREMENTS["Slurm cluster: barehub usage --source slurm --json, one sacct call (s)"] = \
        round(time.monotonic() - start, 2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    [row] = report["rows"]
    assert row["key"] == "leo" and row["sessions"] >= 1
    ours = hpc.login.run(f"{PREFIX}/conda/bin/python -c 'import json, time; from barehub import usage, usage_slurm; "
                         "now = time.time(); print(json.dumps([usage.session_dict(s) for s in "
                         "usage_slurm.sessions(usage.this_month(now), now)]))'").stdout
    [session] = [s for s in json.loads(ours) if s["id"] == job["id"]]
    assert (session["user"], session["group"], session["server"], session["profile"], session["gpus"]) == \
        ("leo", "leo", "", GPU_PROFILE, 1)
    assert abs((session["end"] - session["start"]) - elapsed) <= 1  # 1 GPU x its elapsed time
    assert session["mem_peak_bytes"] >= 200 * 1024 ** 2 and session["cpu_s"] > 0, session
    leos = [s for s in json.loads(ours) if s["user"] == "leo"]  # (earlier tests' jobs of hers: this month's too)
    assert row["gpu_hours"] == pytest.approx(sum(s["gpus"] * (s["end"] - s["start"]) for s in leos) / 3600, abs=1e-6)
    assert row["gpu_hours"] >= elapsed / 3600
    by_group = json.loads(barehub_usage(hpc, "--json", "--by", "group", "--group", "leo").stdout)
    assert [r["key"] for r in by_group["rows"]] == ["leo"] and by_group["rows"][0]["gpu_hours"] == row["gpu_hours"]
    by_profile = {r["key"]: r for r in json.loads(barehub_usage(hpc, "--json", "--by", "profile").stdout)["rows"]}
    assert by_profile[GPU_PROFILE]["gpu_hours"] >= elapsed / 3600
    table = barehub_usage(hpc, "--by", "user")
    assert table.returncode == 0 and "leo" in table.stdout and "Slurm jobs (sacct)" in table.stdout, table.stdout


def test_usage_with_slurmdbd_down_fails_saying_so_and_jobs_meanwhile_are_accounted_once_it_is_back(hpc, hub):
    kim = user("kim")
    hpc.login.run("systemctl stop slurmdbd")
    try:
        proc = barehub_usage(hpc, "--json")
        assert proc.returncode != 0 and proc.stdout == "", proc.stdout  # no report of zeros
        assert "Slurm's accounting (slurmdbd) is unreachable or off" in proc.stderr, proc.stderr
        assert "Connection refused" in proc.stderr and "systemctl status slurmdbd" in proc.stderr, proc.stderr
        kim.spawn(timeout=180, form={"profile": CPU_PROFILE})  # Slurm itself runs on without its accounting
        [job] = hpc.jobs("kim")
        stop_server(hpc, kim)
    finally:
        hpc.login.run("systemctl start slurmdbd")
    # slurmctld kept the records and sends them once slurmdbd is back
    wait_until(lambda: accounted_end(hpc, job["id"])[0] not in ("", "Unknown"), 60, interval=1)
    proc = barehub_usage(hpc, "--json", "--user", "kim")
    assert proc.returncode == 0 and json.loads(proc.stdout)["rows"][0]["sessions"] >= 1, proc.stdout + proc.stderr


def test_a_user_sees_her_own_usage_with_her_own_token_and_nobody_elses(hpc, hub):
    """GET /hub/api/users/NAME/usage with leo's own token: his month, per profile, with his GPU job from Slurm's
    accounting; kim's usage and everyone's are refused to him."""
    leo = user("leo")
    # the hub gathers usage once a minute: its last gathering may be from while slurmdbd was stopped (503 then), and
    # once (of 2 runs) the first one after slurmdbd came back had none of leo's jobs for its minute (not understood)
    def has_his_gpu_job() -> bool:
        r = leo.api("GET", "users/leo/usage")
        return r.status_code == 200 and GPU_PROFILE in {row["key"] for row in r.json()["rows"]}

    wait_until(has_his_gpu_job, 150, interval=2)
    report = leo.api("GET", "users/leo/usage").json()
    assert report["timezone"] == "UTC" and report["by"] == "profile"
    assert {row["key"] for row in report["rows"]} >= {GPU_PROFILE} and report["total"]["gpu_hours"] > 0, report
    assert leo.api("GET", "users/kim/usage").status_code in (403, 404)
    assert leo.api("GET", "usage").status_code == 403


def test_a_group_past_its_gpu_quota_gets_no_gpu_server_but_still_a_cpu_one(hpc, hub):
    """The shipped quotas.py drop-in with the group's GPU hours set below what its GPU jobs used this month, as
    Slurm's accounting (slurmdbd) says: a GPU spawn through the REST API is refused with the quota, the use and when
    it resets, and nothing is queued; a CPU spawn of the same user starts (a spawn without a GPU is not refused for
    GPU hours); the running server is not stopped when the quota applies."""
    group = hpc.login.run("id -gn leo").stdout.strip()
    leo = user("leo")
    leo.spawn(timeout=180, form={"profile": CPU_PROFILE})  # running while the quota comes in
    put_fragment(hpc.login, "60-quotas.py", filled("quotas.py", {
        '"group:physics": {"cpu_hours": 5000, "gpu_hours": 100}': f'"group:{group}": {{"gpu_hours": 0.0001}}'}))
    hpc.login.run(f"systemctl reload {HUB}")
    try:
        assert [job["state"] for job in hpc.jobs("leo")] == ["RUNNING"]  # not stopped by the quota
        r = leo.api("POST", "users/leo/servers/gpu", json={"profile": GPU_PROFILE})
        assert r.status_code == 403, r.text
        message = r.json()["message"]
        assert message.startswith(f"Quota reached: your group {group} has used ") and " of its 0.0001 GPU hours " \
            "this month. The quota resets on " in message and " 00:00:00 UTC." in message, message
        assert hpc.jobs("leo", "gpu") == []  # nothing reached Slurm
        stop_server(hpc, leo)
        leo.spawn(timeout=180, form={"profile": CPU_PROFILE})  # CPU hours are not limited for the group
        stop_server(hpc, leo)
    finally:
        hpc.login.run(f"rm -f {PREFIX}/jupyterhub_config.d/60-quotas.py && systemctl reload {HUB}")


class GpusTaken:
    """Both GPUs of cn2 held by another job, until the block ends (or release())."""
    def __init__(self, hpc: SlurmCluster):
        self.hpc = hpc
        self.job = ""

    def __enter__(self) -> "GpusTaken":
        self.job = self.hpc.login.run("runuser -u kim -- sbatch --parsable -p gpu --gres=gpu:2 -c 1 --mem=100M "
                                      "--time=10 -J gpus-taken -o /dev/null --wrap 'sleep 600'").stdout.strip()
        wait_until(lambda: self.state() == "RUNNING", 60)
        return self

    def state(self) -> str:
        return self.hpc.login.run(f"squeue -h -j {self.job} -o %T", check=False).stdout.strip()

    def release(self) -> None:
        self.hpc.login.run(f"scancel {self.job}")
        wait_until(lambda: self.state() == "", 60)

    def __exit__(self, *exc) -> None:
        self.hpc.login.run(f"scancel {self.job}", check=False)


def server_model(hub_user: HubUser) -> dict:
    return hub_user.api("GET", f"users/{hub_user.name}").json()["servers"].get("", {})


def test_a_hub_restart_keeps_a_pending_and_a_running_job_and_tracks_both(hpc, hub):
    kim, leo = user("kim"), user("leo")
    kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
    [running] = hpc.jobs("kim")
    with GpusTaken(hpc) as gpus:
        assert leo.api("POST", "users/leo/server", json={"profile": GPU_PROFILE}).status_code in (201, 202)
        leo.progress_events(timeout=60,
                            until=lambda e: "Waiting in Slurm's queue (PENDING, Resources)" in e.get("message", ""))
        [pending] = hpc.jobs("leo")
        with RequestLoop(f"{LOGIN_NODE_URL}/user/kim/api/status", kim.auth()) as loop:
            hpc.login.run(f"systemctl restart {HUB}")
            wait_until(lambda: status_code(f"{LOGIN_NODE_URL}/hub/health") == 200, 120)
        assert loop.failed == 0, loop.failures  # kim's server never noticed
        assert server_model(kim)["ready"] is True and [j["id"] for j in hpc.jobs("kim")] == [running["id"]]
        time.sleep(5)
        assert [(j["id"], j["state"]) for j in hpc.jobs("leo")] == [(pending["id"], "PENDING")]  # kept, in its place
        # JupyterHub's word for a server it follows at its start ("spawn" is for a start() of its own)
        assert server_model(leo).get("pending") == "check", server_model(leo)
        page = leo.session.get(f"{LOGIN_NODE_URL}/hub/spawn-pending/leo", timeout=30)
        assert page.status_code == 200 and "Your server is starting up" in page.text
        gpus.release()
    wait_until(lambda: server_model(leo).get("ready") is True, 120)  # tracked: the hub took the job's server
    leo.spawn(timeout=60)
    assert leo.execute("import socket; print(socket.gethostname())").strip() == "cn2"
    assert [j["id"] for j in hpc.jobs("leo")] == [pending["id"]]
    stop_server(hpc, leo)
    stop_server(hpc, kim)


def test_a_users_server_token_can_report_a_port_and_nothing_else(hpc, hub):
    """The port report (POST /hub/api/batchspawner) takes the server's own token, which the user has in her
    server's environment. batchspawner's handler set any spawner attribute the request named: with
    exec_prefix "" and her own batch_cancel_cmd, the hub (root) ran her command when her server stopped."""
    kim = user("kim")
    kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
    attributes = {"exec_prefix": "", "batch_cancel_cmd": f"id -un > {PREFIX}/state/cancelled-as; scancel {{job_id}}"}
    answer = kim.execute("import os, requests; print(requests.post(os.environ['JUPYTERHUB_API_URL'] + '/batchspawner', "
                         "headers={'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}, "
                         f"json={attributes!r}, timeout=30).status_code)")
    stop_server(hpc, kim)
    ran_as = hpc.login.run(f"cat {PREFIX}/state/cancelled-as", check=False).stdout.strip()
    assert ran_as == "", f"kim's command ran on the login node as {ran_as}"
    assert answer.strip() == "400"


def doctor(hpc: SlurmCluster, *args: str):
    return hpc.login.run(f"barehub doctor slurm --prefix {PREFIX} --timeout 60 " + " ".join(args), check=False,
                         timeout=180)


class HubApiBlockedFromTheNodes:
    """The login node's firewall refuses the hub's public port to the compute nodes (users still reach it)."""
    def __init__(self, hpc: SlurmCluster):
        self.hpc = hpc

    def __enter__(self):
        nodes = ", ".join(ADDRESSES[n] for n in ("cn1", "cn2"))
        self.hpc.login.run("nft -f -", input=f"table inet barehub_test {{\n chain input {{\n  type filter hook input "
                           f"priority 0;\n  ip saddr {{ {nodes} }} tcp dport {HTTP_PORT} reject with tcp reset\n }}\n}}\n")
        return self

    def __exit__(self, *exc):
        self.hpc.login.run("nft delete table inet barehub_test")


def test_doctor_passes_every_hop_on_a_healthy_cluster(hpc, hub):
    proc = doctor(hpc, "--user", "kim")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split()[1] for line in lines[:4]] == ["ok"] * 4, proc.stdout
    assert "sbatch accepted the test job as kim" in lines[0]
    assert "started on cn1" in lines[1]
    assert f"cn1 -> hub API ({HUB_URL}/hub/api): answered 200" in lines[2]
    assert "this host -> cn1 in the servers' port range 40000-40999: connected to cn1:4" in lines[3]
    assert "all 4 hops passed" in lines[4]
    proc = doctor(hpc, "--user", "leo", "--partition", "gpu")
    assert proc.returncode == 0 and "started on cn2" in proc.stdout, proc.stdout + proc.stderr
    assert hpc.login.run("squeue -h -n barehub-doctor").stdout == ""  # it cleans up
    assert hpc.login.run("ls -A /home/kim /home/leo").stdout.count(".barehub-doctor") == 0


def test_doctor_names_the_hub_api_hop_when_the_nodes_cannot_reach_it_and_a_spawn_says_so_at_once(hpc, hub):
    kim = user("kim")
    with HubApiBlockedFromTheNodes(hpc):
        proc = doctor(hpc, "--user", "kim")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert f"FAIL  cn1 -> hub API ({HUB_URL}/hub/api): ConnectionError: [Errno 111] Connection refused" \
            in proc.stdout, proc.stdout
        assert "error: doctor slurm: hub-api failed" in proc.stderr
        assert f"hint: servers report to the hub there: allow TCP {HTTP_PORT} from the compute nodes" in proc.stderr
        # a user's spawn meanwhile: the job cannot report its port, ends, and she is told (not after 300 s)
        start = time.monotonic()
        assert kim.api("POST", "users/kim/server", json={"profile": CPU_PROFILE}).status_code in (201, 202, 500)
        events = kim.progress_events(until=lambda e: e.get("failed"), timeout=120)
        MEASUREMENTS["Slurm cluster: hub API blocked from the nodes, spawn request to the user's error (s)"] = \
            round(time.monotonic() - start, 1)
        assert "ended before the server started" in events[-1]["message"], events[-1]
        log = events[-1]["message"].rsplit("Its output is in ", 1)[1].rstrip(".")
        assert "could not tell the hub this server's port" in hpc.login.run(f"cat {log}").stdout
    proc = doctor(hpc, "--user", "kim")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def sessions(hub_user: HubUser) -> dict[str, dict]:
    """The user's sessions as the REST API gives them to her own token, by server name."""
    r = hub_user.api("GET", f"users/{hub_user.name}/sessions", timeout=30)
    r.raise_for_status()
    return {s["name"]: s for s in r.json()["sessions"]}


def test_one_user_runs_a_cpu_session_on_cn1_and_a_gpu_session_on_cn2_at_once_each_stopped_on_its_own(hpc, hub):
    kim, leo = user("kim"), user("leo")
    for name, profile in (("cpu", CPU_PROFILE), ("gpu", GPU_PROFILE)):
        r = kim.api("POST", f"users/kim/servers/{name}", json={"profile": profile})
        assert r.status_code in (201, 202), r.text
    wait_until(lambda: [sessions(kim).get(n, {}).get("state") for n in ("cpu", "gpu")] == ["running"] * 2, 240)
    [cpu], [gpu] = hpc.jobs("kim", "cpu"), hpc.jobs("kim", "gpu")
    assert (cpu["state"], cpu["node"], gpu["state"], gpu["node"]) == ("RUNNING", "cn1", "RUNNING", "cn2")
    cards = sessions(kim)
    assert (cards["cpu"]["node"], cards["cpu"]["job_id"], cards["gpu"]["node"], cards["gpu"]["job_id"]) == \
        ("cn1", cpu["id"], "cn2", gpu["id"])
    assert 7.9 * 3600 < cards["cpu"]["time_left_s"] <= 8 * 3600 and 3.9 * 3600 < cards["gpu"]["time_left_s"] <= 4 * 3600
    assert cards["cpu"]["profile"] == CPU_PROFILE and cards["cpu"]["log"] == f"/home/kim/.jupyterhub_slurm_{cpu['id']}.log"
    for name in ("cpu", "gpu"):  # both reachable, each on its node
        status = requests.get(f"{LOGIN_NODE_URL}/user/kim/{name}/api/status", headers=kim.auth(), timeout=30)
        assert status.status_code == 200
    # her cpu server's own token reads its own session (JupyterLab's walltime warning) and not her gpu one's
    out = kim.execute("import os, requests\n"
                      "api, name = os.environ['JUPYTERHUB_API_URL'], os.environ['JUPYTERHUB_SERVER_NAME']\n"
                      "auth = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
                      "own = requests.get(f'{api}/users/kim/sessions/{name}', headers=auth, timeout=30)\n"
                      "other = requests.get(f'{api}/users/kim/sessions/gpu', headers=auth, timeout=30)\n"
                      "print(name, own.status_code, bool(own.json().get('ends_at')), other.status_code)", server="cpu")
    assert out.split() == ["cpu", "200", "True", "404"], out
    for path in ("sessions", "sessions/gpu"):  # another user, with her own token: nothing of kim's
        r = leo.api("GET", f"users/kim/{path}", timeout=30)
        assert r.status_code in (403, 404) and "cn2" not in r.text, (path, r.status_code)

    assert kim.api("DELETE", "users/kim/servers/cpu").status_code in (202, 204)
    wait_until(lambda: hpc.jobs("kim", "cpu") == [], 60)
    assert [job["state"] for job in hpc.jobs("kim", "gpu")] == ["RUNNING"]  # the other one runs on
    assert requests.get(f"{LOGIN_NODE_URL}/user/kim/gpu/api/status", headers=kim.auth(), timeout=30).status_code == 200
    cards = sessions(kim)
    assert (cards["cpu"]["state"], cards["cpu"]["why"], cards["gpu"]["state"]) == ("ended", "stopped", "running")
    for name in ("cpu", "gpu"):
        kim.api("DELETE", f"users/kim/servers/{name}", json={"remove": True})
    wait_until(lambda: hpc.jobs("kim", None) == [] and set(sessions(kim)) == {""}, 60)


def card(b: Browser, name: str) -> str:
    return f'#session-{name}'


def card_state(b: Browser, name: str) -> str:
    found = b.driver.find_elements(By.CSS_SELECTOR, card(b, name))
    return found[0].get_attribute("data-state") if found else ""


def card_text(b: Browser, name: str) -> str:
    return b.driver.find_element(By.CSS_SELECTOR, card(b, name)).text


def new_session(b: Browser, name: str, profile: str) -> None:
    """On the sessions page: name a new session, then choose its profile on JupyterHub's spawn page."""
    b.get(f"{LOGIN_NODE_URL}/hub/sessions")
    b.wait_for_css("#bh-new-name")
    b.fill({"name": name})
    b.click("#bh-new-start")
    choose_profile(b, profile)


def press(b: Browser, name: str, action: str) -> None:
    b.driver.find_element(By.CSS_SELECTOR, f"{card(b, name)} .bh-{action}").click()


def test_in_a_browser_sessions_start_from_the_sessions_page_wait_with_slurms_reason_are_cancelled_relaunched_warned_and_ended_by_the_time_limit(
        hpc, hub):
    """Chromium, on the login node's network, as leo: a 1-minute session from the sessions page (JupyterLab
    warns that it ends soon), a GPU session while both GPUs are taken (its card says it is queued and why, and
    when Slurm expects it to start), Cancel (the card stays: cancelled), Relaunch with the same profile once the
    GPUs are free (running on cn2), and the short session's card ends as "time limit reached". Screenshots in
    test-artifacts/slurm-cluster/."""
    with GpusTaken(hpc) as gpus, Browser("slurm-cluster") as b:
        b.get(f"{LOGIN_NODE_URL}/hub/login")
        b.wait_for_css("#login_submit")
        b.fill({"username": "leo", "password": USERS["leo"][1]})
        b.click("#login_submit")
        new_session(b, "short", SHORT_PROFILE)
        b.wait_for_css(LAB, 120)
        assert "/user/leo/short/lab" in b.url
        b.wait_for_text("Save your work", 90)  # JupyterLab's warning: the job's time limit is near
        b.shot("jupyterlab-warns-the-session-ends-soon")

        new_session(b, "gpu", GPU_PROFILE)
        b.wait_for_text("Waiting in Slurm's queue (PENDING, Resources)", 60)  # the spawn page, as before
        b.get(f"{LOGIN_NODE_URL}/hub/sessions")
        b.wait_for(lambda b: card_state(b, "gpu") == "queued", 30, "gpu session queued")
        b.wait_for(lambda b: "Expected start" in card_text(b, "gpu"), 60, "Slurm's expected start")
        assert "Resources" in card_text(b, "gpu") and GPU_PROFILE in card_text(b, "gpu")
        short = card_text(b, "short")
        assert "Time left" in short and "Save your work" in short and "cn1" in short, short
        b.shot("sessions-gpu-queued-with-slurms-reason-short-warned")

        press(b, "gpu", "cancel")
        wait_until(lambda: hpc.jobs("leo", "gpu") == [], 60)  # the queued job is cancelled
        b.wait_for(lambda b: card_state(b, "gpu") == "ended", 30, "gpu session cancelled")
        assert "cancelled" in card_text(b, "gpu")
        b.shot("gpu-session-cancelled-card-stays")

        gpus.release()
        press(b, "gpu", "relaunch")
        b.wait_for(lambda b: card_state(b, "gpu") == "running", 180, "gpu session running")
        assert "cn2" in card_text(b, "gpu") and [j["node"] for j in hpc.jobs("leo", "gpu")] == ["cn2"]
        b.shot("gpu-session-relaunched-running-on-cn2")

        wait_until(lambda: hpc.jobs("leo", "short") == [], 180, interval=1)  # Slurm ended it at its time limit
        ended = time.monotonic()
        b.wait_for(lambda b: card_state(b, "short") == "ended", 90, "short session ended")
        MEASUREMENTS["Slurm cluster: a job ended by Slurm, shown on its card after (s)"] = \
            round(time.monotonic() - ended, 1)
        assert "time limit reached" in card_text(b, "short"), card_text(b, "short")
        b.shot("short-session-ended-time-limit-reached")

        press(b, "short", "delete")
        b.wait_for(lambda b: card_state(b, "short") == "", 30, "short session deleted")
        press(b, "gpu", "cancel")
        b.wait_for(lambda b: card_state(b, "gpu") == "ended", 60, "gpu session stopped")
        b.shot("sessions-after-delete-and-stop")
    leo = user("leo")
    for name in ("gpu",):
        leo.api("DELETE", f"users/leo/servers/{name}", json={"remove": True})
    wait_until(lambda: hpc.jobs("leo", None) == [], 60)


def test_a_server_that_dies_at_start_on_its_node_is_reported_at_once_with_slurms_state(hpc, hub):
    """A broken config in the user's (shared) home: the job starts on cn1, reports its port, its server exits."""
    kim = user("kim")
    hpc.login.run("mkdir -p /home/kim/.jupyter && echo 'import os; os._exit(3)' > /home/kim/.jupyter/"
                  "jupyter_server_config.py && chown -R kim: /home/kim/.jupyter")
    try:
        message, elapsed = kim.failed_spawn(CPU_PROFILE)
    finally:
        hpc.login.run("rm -rf /home/kim/.jupyter")
    MEASUREMENTS["Slurm cluster: server dies at start on its node, spawn request to the user's error (s)"] = \
        round(elapsed, 1)
    assert "ended before the server started (FAILED, reason: NonZeroExitCode)" in message, message
    assert "/home/kim/.jupyterhub_slurm_" in message and elapsed < 60  # not the 300 s start timeout
    assert hpc.jobs("kim") == []


def test_a_profile_whose_partition_is_down_is_refused_at_once_and_its_job_cancelled(hpc, hub):
    leo = user("leo")
    hpc.login.run("scontrol update PartitionName=gpu State=DOWN")
    try:
        message, elapsed = leo.failed_spawn(GPU_PROFILE)
    finally:
        hpc.login.run("scontrol update PartitionName=gpu State=UP")
    MEASUREMENTS["Slurm cluster: the GPU partition down, spawn request to the user's error (s)"] = round(elapsed, 1)
    assert "Slurm will not start job" in message and "PartitionDown" in message, message
    assert "the partition is down" in message and elapsed < 30
    wait_until(lambda: hpc.jobs("leo") == [], 30)


def rpc_counts(hpc: SlurmCluster) -> tuple[int, dict[str, int]]:
    """slurmctld's own counts (sdiag) of the RPCs that read jobs (REQUEST_JOB_INFO and REQUEST_JOB_INFO_SINGLE:
    what squeue sends), and of all RPCs by user."""
    out = hpc.login.run("sdiag").stdout
    job_info = sum(int(n) for n in re.findall(r"^\s*REQUEST_JOB_INFO(?:_SINGLE)?\s+\(\s*\d+\)\s+count:(\d+)", out, re.M))
    by_user = re.findall(r"^\s*(\S+)\s+\(\s*\d+\)\s+count:(\d+)", out.split("by user", 1)[1], re.M)
    return job_info, {name: int(n) for name, n in by_user}


def job_info_rpcs_during(hpc: SlurmCluster, action) -> tuple[int, dict[str, int], float]:
    """The job-info RPCs slurmctld served while `action` ran, the RPCs of users kim and leo, and its seconds."""
    (job_info, users), start = rpc_counts(hpc), time.monotonic()
    action()
    took = time.monotonic() - start
    after, users_after = rpc_counts(hpc)
    return after - job_info, {u: users_after.get(u, 0) - users.get(u, 0) for u in ("kim", "leo")}, took


def test_three_servers_polls_make_one_squeue_per_interval_and_a_job_cancelled_outside_is_noticed_within_one(hpc, hub):
    """Upstream asked each job with its own `sudo -u USER squeue` at each poll: here one squeue, the hub's own, asks
    for all jobs, at most twice per poll interval (POLL_S); at the hub's start too, where JupyterHub polls them all
    at once. slurmctld counts the RPCs itself (sdiag), and by user: a per-job call would be kim's or leo's."""
    kim, leo = user("kim"), user("leo")
    kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
    leo.spawn(timeout=180, form={"profile": CPU_PROFILE})
    assert kim.api("POST", "users/kim/servers/gpu", json={"profile": GPU_PROFILE}).status_code in (201, 202)
    wait_until(lambda: sessions(kim).get("gpu", {}).get("state") == "running", 180)
    [leos] = hpc.jobs("leo")

    def restart():
        hpc.login.run(f"systemctl restart {HUB}")
        wait_until(lambda: status_code(f"{LOGIN_NODE_URL}/hub/health") == 200, 120)
    calls, users, took = job_info_rpcs_during(hpc, restart)  # one call at the start, then the periodic ones
    assert calls <= 1 + 2 * math.ceil(took / POLL_S) and users == {"kim": 0, "leo": 0}, (calls, users, took)
    calls, users, took = job_info_rpcs_during(hpc, lambda: time.sleep(2 * POLL_S))
    MEASUREMENTS["Slurm cluster: 3 servers, job-info RPCs per poll interval (upstream: 3)"] = round(calls * POLL_S / took, 1)
    assert 1 <= calls <= 2 * 2 + 1 and users == {"kim": 0, "leo": 0}, (calls, users)
    assert server_model(kim)["ready"] is True and sessions(kim)["gpu"]["node"] == "cn2"  # (what squeue said)

    hpc.login.run(f"scancel {leos['id']}")  # an admin, or the user on the command line
    waited = wait_until(lambda: server_model(leo) == {}, 60, interval=0.5)
    MEASUREMENTS["Slurm cluster: a job scancelled outside the hub, shown as stopped after (s)"] = round(waited, 1)
    assert waited <= POLL_S + 3, waited  # within one poll interval (and the call's own time)
    assert sessions(leo)[""]["why"] == "cancelled"
    for name in ("", "gpu"):
        kim.api("DELETE", f"users/kim/servers/{name}", json={"remove": bool(name)})
    wait_until(lambda: hpc.jobs("kim", None) == [], 60)


def test_slurmctld_down_for_a_minute_leaves_servers_alone_fails_new_spawns_clearly_and_recovers(hpc, hub):
    kim, leo = user("kim"), user("leo")
    kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
    with RequestLoop(f"{LOGIN_NODE_URL}/user/kim/api/status", kim.auth()) as loop:
        hpc.login.run("systemctl stop slurmctld")
        down = time.monotonic()
        try:
            message, _ = leo.failed_spawn(GPU_PROFILE)
            assert "Unable to contact slurm controller" in message, message
            MEASUREMENTS["Slurm cluster: slurmctld down, a new spawn's error after (s)"] = \
                round(time.monotonic() - down, 1)
            time.sleep(max(0.0, 60 - (time.monotonic() - down)))  # the hub polls kim's job meanwhile (every 30 s)
            assert status_code(f"{LOGIN_NODE_URL}/hub/health") == 200
        finally:
            hpc.login.run("systemctl start slurmctld")
    assert loop.failed == 0, loop.failures  # her server on cn1 never noticed
    assert server_model(kim)["ready"] is True
    leo.spawn(timeout=180, form={"profile": GPU_PROFILE})  # all recovered: a new job runs, on cn2
    assert [j["node"] for j in hpc.jobs("leo")] == ["cn2"]
    stop_server(hpc, leo)
    stop_server(hpc, kim)


# leo's squatter on cn1 (the nodes' /usr/bin/python3, stdlib only)
SQUATTER = r'''
"""From the moment a socket of kim's shows on this node (her job's held port; before the fix, her port report's
connection: both come after her job chose its port), for up to SECONDS or until SIGTERM: take every port of the
range that is free, on 0.0.0.0 or the node's address, and on [::], answering "SQUATTED" on each. Writes what it
got to OUT. Usage: squatter.py LOW HIGH KIM_UID OUT SECONDS"""
import errno, json, resource, selectors, signal, socket, sys, time

low, high, kim_uid, out, seconds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 65536, hard))
stopped = []
signal.signal(signal.SIGTERM, lambda *_: stopped.append(1))
PAGE = b"HTTP/1.0 200 OK\r\nContent-Type: text/html\r\nContent-Length: 8\r\n\r\nSQUATTED"
NODE = socket.gethostbyname(socket.gethostname())


def kim_sockets():
    """The inodes of kim's TCP sockets on this node."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            inodes |= {line.split()[9] for line in f.read().splitlines()[1:] if line.split()[7] == kim_uid}
    return inodes


BEFORE = kim_sockets()  # what an earlier server of hers may leave for a moment: not her new job's


def kim_has_a_socket():
    return bool(kim_sockets() - BEFORE)


def take(family, address, port):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        s.bind((address, port))
        s.listen()
    except OSError as e:
        s.close()
        errors.setdefault(port, set()).add(errno.errorcode.get(e.errno, str(e.errno)))
        return None
    s.setblocking(False)
    held[(family, port)] = s
    selector.register(s, selectors.EVENT_READ)
    return s


result = {"triggered": False, "passes": 0}
held, errors, selector = {}, {}, selectors.DefaultSelector()
waited_until = time.monotonic() + 240
while not stopped and time.monotonic() < waited_until and not kim_has_a_socket():
    time.sleep(0.005)
result["triggered"] = not stopped and time.monotonic() < waited_until
end = time.monotonic() + seconds
while result["triggered"] and not stopped and time.monotonic() < end:
    for port in range(low, high + 1):
        if (socket.AF_INET, port) not in held:
            take(socket.AF_INET, "0.0.0.0", port) or take(socket.AF_INET, NODE, port)
        if (socket.AF_INET6, port) not in held and socket.has_ipv6:
            take(socket.AF_INET6, "::", port)
    result["passes"] += 1
    for key, _ in selector.select(timeout=0.005):
        try:
            conn, _ = key.fileobj.accept()
        except OSError:
            continue
        with conn:
            conn.settimeout(1)
            try:
                conn.recv(65536)
                conn.sendall(PAGE)
            except OSError:
                pass
ports = {port for _, port in held}
result["held"] = sorted(ports)
result["errors"] = {str(port): sorted(names) for port, names in errors.items() if port not in ports}
with open(out, "w") as f:
    json.dump(result, f)
'''


class Squatter:
    """leo's squatter on cn1, started and stopped by its PID (bounded)."""
    def __init__(self, hpc: SlurmCluster, ports: range):
        self.node, self.ports, self.pid = hpc.nodes["cn1"], ports, 0

    def __enter__(self) -> "Squatter":
        self.node.run("rm -f /tmp/squatter.*; cat > /tmp/squatter.py", input=SQUATTER)
        self.node.run(f"runuser -u leo -- sh -c 'echo $$ > /tmp/squatter.pid; exec python3 /tmp/squatter.py "
                      f"{self.ports.start} {self.ports.stop - 1} {USERS['kim'][0]} /tmp/squatter.json 120' "
                      "</dev/null >/tmp/squatter.log 2>&1 &")
        wait_until(lambda: self.node.run("cat /tmp/squatter.pid", check=False).stdout.strip().isdigit(), 10)
        self.pid = int(self.node.run("cat /tmp/squatter.pid").stdout)
        return self

    def alive(self) -> bool:
        return self.node.run(f"kill -0 {self.pid}", check=False).returncode == 0

    def result(self) -> dict:
        """Stops it (SIGTERM: it writes what it got), and what it got."""
        self.node.run(f"kill -TERM {self.pid}", check=False)
        wait_until(lambda: not self.alive(), 15)
        return json.loads(self.node.run("cat /tmp/squatter.json").stdout)

    def __exit__(self, *exc) -> None:
        if self.pid and self.alive():
            self.node.run(f"kill -KILL {self.pid}", check=False)
        self.node.run("rm -f /tmp/squatter.*", check=False)


def test_a_squatter_on_the_node_never_gets_the_port_a_job_reports_and_a_port_outside_the_range_is_refused(hpc, hub):
    """Another user on the compute node takes every port of the range she can, from the moment kim's job shows a
    socket, until the checks are done (120 s at most). Before barehub held the port (bind, close, report, bind
    again), the port kim's job reported was free for seconds (2.5 to 2.8 s measured on one machine,
    jupyterhub-singleuser 6.1.1's start): leo's listener could take it, and the hub routed /user/kim/ there. Now kim's server comes up
    on the port her job held, and leo gets all the others. And kim's own server token cannot point the hub at
    another port: one outside the range, or JSON's true (Python's bool is an int), is refused."""
    import re

    ports = range(40000, 41000)  # slurm.py's PORT_RANGE, as shipped
    kim = user("kim")
    assert hpc.jobs("kim") == []
    kims = f"awk '$8 == {USERS['kim'][0]}' /proc/net/tcp /proc/net/tcp6"  # her earlier server's sockets gone
    wait_until(lambda: hpc.nodes["cn1"].run(kims).stdout.strip() == "", 60)
    with Squatter(hpc, ports) as squatter:
        start = time.monotonic()
        kim.spawn(timeout=180, form={"profile": CPU_PROFILE})  # JupyterLab answers /user/kim/lab through traefik
        MEASUREMENTS["Slurm cluster: login -> JupyterLab with a squatter racing for the port range (s)"] = \
            round(time.monotonic() - start, 1)
        page = kim.session.get(f"{LOGIN_NODE_URL}/user/kim/lab", timeout=30)
        assert page.status_code == 200 and "jupyter-config-data" in page.text and "SQUATTED" not in page.text
        [job] = hpc.jobs("kim")
        assert job["node"] == "cn1"
        out = kim.execute(
            "import json, os, requests\n"
            "url = os.environ['JUPYTERHUB_API_URL'] + '/batchspawner'\n"
            "auth = {'Authorization': 'token ' + os.environ['JUPYTERHUB_API_TOKEN']}\n"
            "answers = [requests.post(url, headers=auth, json={'port': p}, timeout=30) for p in (39999, 41000, True)]\n"
            "print(os.environ['JUPYTERHUB_SERVICE_URL'])\n"
            "print(json.dumps([(r.status_code, r.json().get('message', '')) for r in answers]))")
        service_url, refusals = out.strip().splitlines()
        port = int(service_url.rsplit(":", 1)[1].split("/")[0])
        assert port in ports
        [target] = [url for url in traefik_targets(hpc).values() if url.endswith(f":{port}")]
        assert target == f"http://cn1:{port}"
        listening = hpc.nodes["cn1"].run(f"ss -Hltnp 'sport = :{port}'").stdout
        pids = set(re.findall(r"pid=(\d+)", listening))
        assert pids and {hpc.nodes["cn1"].run(f"stat -c %u /proc/{pid}").stdout.strip() for pid in pids} == \
            {str(USERS["kim"][0])}, listening  # every listener on kim's port is kim's
        for status, message in json.loads(refusals):  # outside the range, and JSON's true: refused, naming the range
            assert status == 400 and "40000-40999" in message, refusals
        assert squatter.alive()  # still racing while all the above ran
        got = squatter.result()
    assert got["triggered"] and got["passes"] > 10, {key: got[key] for key in ("triggered", "passes")}
    assert port not in got["held"] and got["errors"][str(port)] == ["EADDRINUSE"], got["errors"].get(str(port))
    assert len(got["held"]) >= 900  # it raced for the whole range, and took what it could
    status = requests.get(f"{LOGIN_NODE_URL}/user/kim/api/status", headers=kim.auth(), timeout=30)
    assert status.status_code == 200  # her server, still routed to after the refused reports
    stop_server(hpc, kim)


def test_the_culler_keeps_a_silent_cell_and_a_busy_process_on_compute_nodes_and_stops_them_once_idle(hpc, hub):
    """As on a local server (test_culling.py): kim's cell sleeps with no browser connected, leo's cell leaves a
    CPU-bound process behind and goes idle (Slurm here tracks processes without cgroups, proctrack/linuxproc, so
    the server counts its own process tree); both jobs run past the profile's 30 s idle timeout and are cancelled
    one timeout after the work ends, and the culler says why."""
    work_s, idle_s = 70, 30
    put_fragment(hpc.login, "60-culling.py", f"c.Barehub.profile_limits = {{{CPU_PROFILE!r}: {{'idle_timeout': {idle_s}}}}}\n")
    hpc.login.run(f"systemctl reload {HUB}")
    try:
        kim, leo = user("kim"), user("leo")
        for person in (kim, leo):
            person.spawn(timeout=180, form={"profile": CPU_PROFILE})
        since = int(time.time())
        kim.start_cell(f"import time; time.sleep({work_s})")
        start = time.monotonic()
        leo.start_cell(f"import subprocess; subprocess.Popen(['nice', '-n', '19', 'timeout', '{work_s}', 'sh', '-c', "
                       "'while :; do :; done'])")
        stopped: dict[str, float] = {}
        while len(stopped) < 2 and time.monotonic() - start < work_s + idle_s + 60:
            for person in (kim, leo):
                if person.name not in stopped and not hpc.jobs(person.name):
                    stopped[person.name] = round(time.monotonic() - start, 1)
            time.sleep(1)
        MEASUREMENTS["Slurm cluster, culling (timeout 30 s, work 70 s): job cancelled after (s)"] = str(stopped)
        assert set(stopped) == {"kim", "leo"}, stopped
        for name, seconds in stopped.items():
            assert work_s + idle_s - 15 <= seconds <= work_s + idle_s + 45, stopped
        journal = hpc.login.run(f"journalctl -u {HUB} --no-pager --since @{since}", check=False).stdout
        said = [line.split("barehub culler: ", 1)[1] for line in journal.splitlines() if "barehub culler: " in line]
        assert any(s.startswith("keeping kim/: busy (kernel) since") for s in said), said
        assert any(s.startswith("keeping leo/: busy (cpu) since") for s in said), said
        for name in ("kim", "leo"):
            assert any(s.startswith(f"stopping {name}/: idle for") and s.endswith(f"(profile {CPU_PROFILE!r})")
                       for s in said), said
    finally:
        hpc.login.run(f"rm -f {PREFIX}/jupyterhub_config.d/60-culling.py && systemctl reload {HUB}")


def test_vscode_in_a_job_from_the_launcher_on_a_socket_no_other_user_of_the_node_reaches(hpc, hub):
    """The shipped apps.py on a cluster, in Chromium on the login node's network: kim's server runs as a job on
    cn1; VS Code from JupyterLab's launcher, a file saved there and seen in JupyterLab, run in VS Code's terminal
    on cn1. Then, on cn1, it listens on a unix socket in a private directory of her job's, no TCP port; leo, a
    second user on cn1, can neither connect to it nor open it through the hub. Screenshots in
    test-artifacts/slurm-vscode/."""
    try:
        with Browser("slurm-vscode") as b:
            log_in(b, LOGIN_NODE_URL, "kim", USERS["kim"][1])
            choose_profile(b, CPU_PROFILE)
            b.wait_for_css(LAB, 180)
            [job] = hpc.jobs("kim")
            assert job["node"] == "cn1"
            cn1 = hpc.nodes["cn1"]
            MEASUREMENTS["Slurm cluster: VS Code, launcher click -> editor shown in Chromium (s)"] = \
                round(vscode_from_the_launcher(b, cn1, "kim"), 1)
            sock = socket_only(cn1, "kim")
            assert re.fullmatch(r"/tmp/barehub-apps-[^/]+/vscode.sock", sock), sock  # a job's: new, private
            another_user_cannot_connect(cn1, "leo", sock)
            refused_to_another_user(user("kim"), user("leo"))
            MEASUREMENTS["Slurm cluster: VS Code, memory of an idle code-server in a job (MiB)"] = rss_mib(cn1, "kim")
    finally:
        stop_server(hpc, user("kim"))


def test_uninstall_cancels_every_users_jobs_queued_and_running(hpc, hub):
    """Last: README promises an uninstall stops the users' servers; on a cluster they are jobs, and a job left
    behind would run (or start, from the queue) with no hub to reach."""
    kim, leo = user("kim"), user("leo")
    kim.spawn(timeout=180, form={"profile": CPU_PROFILE})
    with GpusTaken(hpc):
        r = leo.api("POST", "users/leo/servers/gpu", json={"profile": GPU_PROFILE})
        assert r.status_code in (201, 202), r.text
        wait_until(lambda: [j["state"] for j in hpc.jobs("leo", "gpu")] == ["PENDING"], 60)
        assert [j["state"] for j in hpc.jobs("kim")] == ["RUNNING"]
        out = hpc.login.run(f"barehub uninstall --prefix {PREFIX} 2>&1").stdout  # (the prefix is the nodes' shared mount)
        assert hpc.jobs("kim", None) == [] and hpc.jobs("leo", None) == [], out
    assert "users' servers stopped" in out, out
