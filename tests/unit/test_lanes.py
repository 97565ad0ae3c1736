"""tests/run's lanes: every module runs in exactly one lane, each lane in a network namespace of its own."""
import pytest

from testbed import lanes


def test_the_rest_lane_runs_what_no_other_lane_names():
    commands = lanes.lane_commands([["tests/unit", "tests/integration/test_a.py"], ["tests/integration/test_b.py"]],
                                   ["tests/integration"], ["-ra"])
    assert len(commands) == 3
    assert all(cmd[:len(lanes.IN_OWN_NETWORK)] == lanes.IN_OWN_NETWORK for cmd in commands)
    assert commands[0][-2:] == ["tests/unit", "tests/integration/test_a.py"]
    rest = commands[2]
    assert "tests/integration" in rest and "-ra" in rest
    assert {"--ignore=tests/integration/test_a.py", "--ignore=tests/integration/test_b.py"} <= set(rest)


def test_a_lane_naming_a_missing_module_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        lanes.main(["--lane", "tests/integration/test_gone.py", "--", "-q"])
    assert "no such test path: tests/integration/test_gone.py" in capsys.readouterr().err
