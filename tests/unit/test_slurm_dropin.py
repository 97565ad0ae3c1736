"""The Slurm drop-in's own logic: the spawn page's profiles become Slurm requests, ports come from a range."""
import socket

import pytest

from barehub.batch_singleuser import free_port_in, parse_range
from barehub.paths import shipped
from barehub.validation import load_config


@pytest.fixture
def slurm(prefix):
    (prefix.config_d / "40-slurm.py").write_text((shipped("jupyterhub_config.d") / "slurm.py").read_text())
    return load_config(prefix).SlurmSpawner


def test_profiles_become_the_job_request(slurm):
    assert 'name="profile"' in slurm.options_form and "1 GPU" in slurm.options_form
    gpu = slurm.options_from_form({"profile": ["1 GPU: 8 CPUs, 32 GB, 4 hours"]})
    assert gpu == {"partition": "gpu", "nprocs": "8", "memory": "32G", "runtime": "4:00:00", "gres": "gpu:1"}
    assert slurm.options_from_form({})["partition"] == "cpu"  # the first profile is the default
    with pytest.raises(ValueError, match="unknown profile"):
        slurm.options_from_form({"profile": ["--partition=admin"]})


def test_job_script_renders_the_request(slurm):
    from batchspawner.batchspawner import format_template

    script = format_template(slurm.batch_script, homedir="/home/carol", username="carol", keepvars="PATH",
                             cmd="run", partition="gpu", runtime="4:00:00", memory="32G", nprocs="8",
                             gres="gpu:1", options="")
    lines = script.splitlines()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=4:00:00", "#SBATCH --mem=32G",
                 "#SBATCH --cpus-per-task=8", "#SBATCH --gres=gpu:1"):
        assert line in lines
    assert not any(line.startswith("#SBATCH") and line.endswith("=") for line in lines)


def test_port_range():
    assert parse_range("40000-40009") == range(40000, 40010)
    with pytest.raises(ValueError, match="not a port range"):
        parse_range("50000-40000")
    with socket.socket() as busy:
        port = busy_port_with_a_free_neighbour(busy)
        assert free_port_in(range(port, port + 2)) == port + 1
        with pytest.raises(RuntimeError, match="no free port"):
            free_port_in(range(port, port + 1))


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
