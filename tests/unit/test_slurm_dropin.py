"""The Slurm drop-in's own logic: the spawn page's profiles become Slurm requests, ports come from a range."""
import http.server
import json
import socket

import pytest

from barehub import batch_singleuser
from barehub.batch_singleuser import hold_port, parse_range
from barehub.package_files import shipped
from barehub.validation import load_config
from traitlets.config import Config


@pytest.fixture
def slurm(prefix):
    (prefix.config_d / "40-slurm.py").write_text((shipped("jupyterhub_config.d") / "slurm.py").read_text())
    return load_config(prefix).SlurmSpawner


def applied(slurm, user_options: dict, spawner=None) -> dict:
    """The Slurm request the spawner submits after the drop-in's apply_user_options (as JupyterHub calls it, on
    the user's Spawner object, which JupyterHub keeps from one spawn to the next)."""
    from barehub.slurm_spawner import SlurmSpawner

    spawner = spawner or SlurmSpawner(config=Config({"SlurmSpawner": slurm}))
    slurm.apply_user_options(spawner, user_options)
    return {key: getattr(spawner, f"req_{key}") for key in ("partition", "nprocs", "memory", "runtime", "gres",
                                                             "options", "account")}


def test_profiles_become_the_job_request(slurm):
    assert 'name="profile"' in slurm.options_form and "1 GPU" in slurm.options_form
    label = "1 GPU: 8 CPUs, 32 GB, 4 hours"
    assert slurm.options_from_form({"profile": [label]}) == {"profile": label}
    assert applied(slurm, {"profile": label}) == {"partition": "gpu", "nprocs": "8", "memory": "32G",
                                                  "runtime": "4:00:00", "gres": "gpu:1", "options": "",
                                                  "account": ""}
    assert applied(slurm, {})["partition"] == "cpu"  # the first profile is the default...
    from barehub.slurm_spawner import SlurmSpawner

    spawner = SlurmSpawner(config=Config({"SlurmSpawner": slurm}))
    applied(slurm, {}, spawner)
    assert spawner.user_options == {"profile": "CPU only: 2 CPUs, 4 GB, 8 hours"}  # ... named (the culler's limits)


def test_a_profiles_keys_do_not_leak_into_the_users_next_spawn_and_the_sites_own_request_stays(prefix):
    """GPU, then CPU, on the same Spawner object: the CPU job asks no GPU (it was `--partition=cpu --gres=gpu:1`),
    and a request the site sets for all jobs in another fragment is in both."""
    from barehub.slurm_spawner import SlurmSpawner

    (prefix.config_d / "40-slurm.py").write_text((shipped("jupyterhub_config.d") / "slurm.py").read_text())
    (prefix.config_d / "50-site.py").write_text('c.SlurmSpawner.req_account = "proj"\n')
    slurm = load_config(prefix).SlurmSpawner
    spawner = SlurmSpawner(config=Config({"SlurmSpawner": slurm}))
    gpu = applied(slurm, {"profile": "1 GPU: 8 CPUs, 32 GB, 4 hours"}, spawner)
    assert (gpu["partition"], gpu["gres"], gpu["account"]) == ("gpu", "gpu:1", "proj")
    cpu = applied(slurm, {"profile": "CPU only: 2 CPUs, 4 GB, 8 hours"}, spawner)
    assert cpu == {"partition": "cpu", "nprocs": "2", "memory": "4G", "runtime": "8:00:00", "gres": "",
                   "options": "", "account": "proj"}


@pytest.mark.parametrize("user_options, says", [
    ({"profile": "--partition=admin"}, "unknown profile"),
    ({"partition": "gpu", "gres": "gpu:8"}, "options gres, partition are not accepted"),
    ({"profile": "CPU only: 2 CPUs, 4 GB, 8 hours", "options": "--account=x"}, "options options are not accepted"),
    ({"profile": ["CPU only: 2 CPUs, 4 GB, 8 hours"]}, "unknown profile"),
])
def test_user_options_other_than_a_profile_are_refused_with_the_profiles_named(slurm, user_options, says):
    """They come unchecked through the REST API, and batchspawner would merge them into the batch script."""
    from tornado import web

    with pytest.raises(web.HTTPError) as e:
        applied(slurm, user_options)
    assert e.value.status_code == 400 and says in e.value.log_message and "CPU only" in e.value.log_message


def test_a_profile_with_a_key_that_is_not_a_slurm_request_is_named_at_load(prefix):
    text = (shipped("jupyterhub_config.d") / "slurm.py").read_text().replace('"gres": "gpu:1"', '"gpus": "1"')
    (prefix.config_d / "40-slurm.py").write_text(text)
    with pytest.raises(ValueError, match=r"\['gpus'\] are not Slurm request keys"):
        load_config(prefix)


def test_a_profile_label_that_cannot_be_the_jobs_comment_is_named_at_load(prefix):
    text = (shipped("jupyterhub_config.d") / "slurm.py").read_text().replace('"CPU only: 2 CPUs', '"CPU \\"only\\": 2 CPUs')
    (prefix.config_d / "40-slurm.py").write_text(text)
    with pytest.raises(ValueError, match="a label has no double quote or line break"):
        load_config(prefix)


def test_job_script_renders_the_request(slurm):
    from batchspawner.batchspawner import format_template

    script = format_template(slurm.batch_script, homedir="/home/carol", username="carol", keepvars="PATH",
                             cmd="run", partition="gpu", runtime="4:00:00", memory="32G", nprocs="8",
                             gres="gpu:1", options="", profile="1 GPU: 8 CPUs, 32 GB, 4 hours")
    lines = script.splitlines()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=4:00:00", "#SBATCH --mem=32G",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1",
                 '#SBATCH --comment="1 GPU: 8 CPUs, 32 GB, 4 hours"'):  # the profile, for barehub usage
        assert line in lines
    assert not any(line.startswith("#SBATCH") and line.endswith("=") for line in lines)


def test_the_port_range_has_one_owner_the_spawner_which_gives_it_to_the_job(slurm):
    from barehub.slurm_spawner import SlurmSpawner

    assert slurm.port_range == "40000-40999" and "BAREHUB_PORT_RANGE" not in slurm.environment
    assert SlurmSpawner(config=Config({"SlurmSpawner": slurm})).ports == range(40000, 41000)


def test_port_range():
    assert parse_range("40000-40009") == range(40000, 40010)
    assert parse_range("40000") == range(40000, 40001)
    for wrong in ("50000-40000", "0-10", "40000-70000", "forty", "40000-"):
        with pytest.raises(ValueError, match="not a port range like 40000-40999"):
            parse_range(wrong)
    with socket.socket() as busy:
        port = busy_port_with_a_free_neighbour(busy)
        held, sockets = hold_port(range(port, port + 2))
        assert held == port + 1
        for sock in sockets:
            sock.close()
        with pytest.raises(RuntimeError, match="no free port"):
            hold_port(range(port, port + 1))


def busy_port_with_a_free_neighbour(busy: socket.socket) -> int:
    """Bind `busy` to a port whose next port is free (another process may hold any given port)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as neighbour:
                neighbour.bind(("", port + 1))
            busy.bind(("", port))
        except OSError:
            continue
        busy.listen()
        return port
    raise AssertionError("no port with a free neighbour found")


class Hub(http.server.BaseHTTPRequestHandler):
    """Answers the port report with the statuses in `answers`, in turn (then 201)."""
    answers: list[int] = []
    seen: list[dict] = []

    def do_POST(self):
        Hub.seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(Hub.answers.pop(0) if Hub.answers else 201)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def hub_api(hub_api_server):
    Hub.seen.clear()
    hub_api_server(Hub)
    return Hub


def test_the_port_report_is_asked_again_while_the_hub_restarts(hub_api):
    hub_api.answers = [502, 503]  # traefik while the hub restarts
    batch_singleuser.report_port(40123)
    assert hub_api.seen == [{"port": 40123}] * 3


def test_a_refused_port_report_ends_the_job_at_once_saying_why(hub_api):
    hub_api.answers = [403]
    with pytest.raises(SystemExit) as e:
        batch_singleuser.report_port(40123)
    assert "could not tell the hub this server's port" in str(e.value) and len(hub_api.seen) == 1


def test_an_unreachable_hub_ends_the_job_after_the_retries(monkeypatch):
    monkeypatch.setattr(batch_singleuser, "REPORT_RETRY", 2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there
    monkeypatch.setenv("JUPYTERHUB_API_URL", f"http://127.0.0.1:{port}/hub/api")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "server-token")
    with pytest.raises(SystemExit) as e:
        batch_singleuser.report_port(40123)
    assert "Connection refused" in str(e.value) and "barehub doctor slurm" in str(e.value)
