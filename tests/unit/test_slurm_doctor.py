"""`barehub doctor slurm`: what it takes from the hub's config, and the verdicts it gives from a probe's findings.
(The hops themselves run on the test cluster: tests/integration/test_slurm_cluster.py.)"""
import socket
import threading

import pytest

from barehub import slurm_doctor
from barehub.package_files import shipped
from barehub.base.errors import BarehubError


def with_slurm(prefix, *extra: str) -> None:
    text = (shipped("jupyterhub_config.d") / "slurm.py").read_text().replace("https://hub.example.org",
                                                                               "https://hub.site.test")
    (prefix.config_d / "40-slurm.py").write_text(text + "\n".join(extra) + "\n")


def test_the_site_comes_from_the_slurm_fragment(prefix):
    with_slurm(prefix)
    site = slurm_doctor.site_from_config(prefix)
    assert site.hub_api == "https://hub.site.test/hub/api" and site.hub_port == 443
    assert site.port_range == "40000-40999"
    assert site.python.endswith("/python")  # the hub env's python, as batchspawner_singleuser_cmd runs it


def test_the_hub_api_url_keeps_a_sub_path(prefix):
    with_slurm(prefix, "c.JupyterHub.base_url = '/jupyter/'")
    assert slurm_doctor.site_from_config(prefix).hub_api == "https://hub.site.test/jupyter/hub/api"


def test_a_hub_without_slurm_is_refused_with_the_fragment_to_add(prefix):
    with pytest.raises(BarehubError) as e:
        slurm_doctor.site_from_config(prefix)
    assert "does not start servers as Slurm jobs" in e.value.message and "slurm.py" in e.value.hint


def test_a_slurm_fragment_without_hub_connect_url_is_named(prefix):
    with_slurm(prefix, "del c.SlurmSpawner.hub_connect_url")
    with pytest.raises(BarehubError) as e:
        slurm_doctor.site_from_config(prefix)
    assert "hub_connect_url" in e.value.message and "HUB_URL" in e.value.hint


SITE = slurm_doctor.SlurmSite(python="/opt/barehub/conda/bin/python", hub_api="https://hub.site.test/hub/api",
                              hub_port=443, port_range="40000-40999")


def test_the_hub_api_verdicts():
    job = slurm_doctor.Job("kim", "/home/kim", id="7", node="cn1")
    ok = slurm_doctor.node_to_hub_api(job, SITE, {"hub-api": "ok 200 6.1.1", "output": ""})
    assert ok.ok and ok.detail == "cn1 -> hub API (https://hub.site.test/hub/api): answered 200, JupyterHub 6.1.1"
    refused = slurm_doctor.node_to_hub_api(job, SITE, {"hub-api": "fail URLError: refused", "output": ""})
    assert not refused.ok and refused.detail.endswith(": URLError: refused") and "TCP 443" in refused.hint
    silent = slurm_doctor.node_to_hub_api(job, SITE, {"output": "python: No module named barehub"})
    assert not silent.ok and "No module named barehub" in silent.detail and "shared filesystem" in silent.hint


def test_the_port_range_verdicts():
    job = slurm_doctor.Job("kim", "/home/kim", id="7", node="127.0.0.1")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def answer():
        conn, _ = server.accept()
        conn.sendall(b"barehub-doctor\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    assert slurm_doctor.host_to_node_port(job, SITE, {"listening": str(port)}).ok
    server.close()
    closed = slurm_doctor.host_to_node_port(job, SITE, {"listening": str(port)})
    assert not closed.ok and "allow TCP 40000-40999 from this host" in closed.hint
    assert not slurm_doctor.host_to_node_port(job, SITE, {"listen": "fail no free port"}).ok


def test_what_the_users_job_wrote_is_shown_without_escape_sequences():
    assert slurm_doctor.printable("fail \x1b]0;owned\x07 refused") == "fail ?]0;owned? refused"
