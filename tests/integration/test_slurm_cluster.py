"""The shipped slurm.py drop-in, only its site values changed, on a real Slurm cluster: the hub and traefik on
a login node, users' servers as jobs on two compute nodes (one with GPUs), each node a booted systemd
container in its own network namespace (tests/integration/slurm_cluster.py). Every client here runs on the
login node's network, as users' browsers reach the login node.
"""
from __future__ import annotations

import json
import os
import statistics
import time

import pytest
import requests

from tests.integration.helpers import (CPU_PROFILE, GPU_PROFILE, HTTP_PORT, MEASUREMENTS, PREFIX, REPO, bootstrap_cmd,
                                       filled, put_fragment, status_code, wait_until)
from tests.integration.hubclient import HubUser
from tests.integration.slurm_cluster import ADDRESSES, USERS, SlurmCluster

HUB_URL = f"http://login:{HTTP_PORT}"  # slurm.py's HUB_URL: the hub's public URL as the nodes reach it
BASE = f"http://{ADDRESSES['login']}:{HTTP_PORT}"  # the same, as this test's clients on the login node use it


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
    put_fragment(hpc.login, "40-slurm.py", filled("slurm.py", {"https://hub.example.org": HUB_URL}))
    start = time.monotonic()
    hpc.login.run(bootstrap_cmd(), timeout=900)
    MEASUREMENTS["Slurm cluster: barehub installed on the login node (s)"] = round(time.monotonic() - start, 1)
    with hpc.on_login_node():
        yield BASE


def user(name: str) -> HubUser:
    hub_user = HubUser(BASE, name, USERS[name][1])
    assert hub_user.login().status_code == 302
    return hub_user


def api(hub_user: HubUser, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{BASE}/hub/api{path}", headers={"Authorization": f"token {hub_user.token()}"},
                            timeout=60, **kwargs)


def stop_server(hpc: SlurmCluster, hub_user: HubUser) -> None:
    assert api(hub_user, "DELETE", f"/users/{hub_user.name}/server").status_code in (202, 204)
    wait_until(lambda: hpc.jobs(hub_user.name) == [], 60)


def traefik_targets(hpc: SlurmCluster) -> dict[str, str]:
    """What traefik itself says it forwards each user's server to (its API, on the login node's loopback)."""
    out = hpc.login.run(f"curl -sf -u jupyterhub:$(cat {PREFIX}/state/traefik_api_password) "
                        "http://127.0.0.1:8099/api/http/services").stdout
    return {s["name"]: s["loadBalancer"]["servers"][0]["url"] for s in json.loads(out) if "loadBalancer" in s}


def test_a_server_runs_as_a_job_on_a_compute_node_and_traefik_forwards_to_that_node(hpc, hub):
    durations = []
    for _ in range(3):  # login -> JupyterLab on the compute node, three times
        kim = HubUser(BASE, "kim", USERS["kim"][1])
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
