"""tests/run's lanes: every module runs in exactly one lane, each lane in a network namespace of its own."""
import os
import subprocess

import pytest

from testbed import lanes


def test_the_rest_lane_runs_what_no_other_lane_names():
    commands = lanes.lane_commands([["tests/integration/test_a.py", "tests/integration/test_b.py"]],
                                   ["tests/integration"], ["-ra"], host_lane=["tests/integration/test_c.py"],
                                   background=["tests/unit"])
    background, lane, host, rest = commands
    assert background[:3] == ["nice", "-n", "19"] and background[-1] == "tests/unit"
    assert lane[:len(lanes.IN_OWN_NETWORK)] == lanes.IN_OWN_NETWORK
    assert lane[-2:] == ["tests/integration/test_a.py", "tests/integration/test_b.py"]
    assert "unshare" not in host and host[-1] == "tests/integration/test_c.py"
    assert rest[:len(lanes.IN_OWN_NETWORK)] == lanes.IN_OWN_NETWORK and "-ra" in rest
    assert {f"--ignore={m}" for m in ("tests/integration/test_a.py", "tests/integration/test_b.py",
                                       "tests/integration/test_c.py", "tests/unit")} <= set(rest)


def test_a_lane_has_its_own_loopback_and_an_address_that_leads_nowhere():
    """What Slurm needs to resolve its hosts (AI_ADDRCONFIG), and nothing that reaches this machine's network."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace of its own needs root (tests/run runs as root)")
    out = subprocess.run([*lanes.IN_OWN_NETWORK, "ip", "-4", "-o", "address"], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0, out.stderr
    addresses = {line.split()[3] for line in out.stdout.splitlines()}
    assert addresses == {"127.0.0.1/8", "10.254.254.1/32"}, out.stdout


def test_a_lane_naming_a_missing_module_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        lanes.main(["--lane", "tests/integration/test_gone.py", "--", "-q"])
    assert "no such test path: tests/integration/test_gone.py" in capsys.readouterr().err
