"""The systemd wrapper's composite steps: a stop that leaves nothing behind in the unit's cgroup, removing units,
many units' states from one list."""
import itertools
import json
import subprocess

import pytest

from barehub.base.errors import BarehubError
from barehub.systemd import Systemctl, remove_unit_files
from tests.unit.conftest import RecordingSystemctl


def recorder(cgroups) -> RecordingSystemctl:
    """systemd whose unit's cgroup holds processes as long as `cgroups` names it."""
    return RecordingSystemctl(show=lambda unit, *props: {"ControlGroup": next(cgroups)})


def test_a_clean_stop_sends_nothing_more():
    systemctl = recorder(iter([""]))
    systemctl.stop_all("jupyterhub.service")
    assert systemctl.calls == [("stop", "jupyterhub.service")]


def test_what_a_killmode_process_stop_left_gets_sigterm():
    group = "/system.slice/jupyterhub.service"
    systemctl = recorder(iter([group, group, ""]))
    systemctl.stop_all("jupyterhub.service")
    assert systemctl.calls == [("stop", "jupyterhub.service"), ("kill", "--kill-whom=all", "jupyterhub.service")]


def test_what_ignores_sigterm_gets_sigkill_after_the_grace():
    systemctl = recorder(itertools.repeat("/system.slice/jupyterhub.service"))
    systemctl.stop_all("jupyterhub.service", grace=0.3)
    assert systemctl.calls[-1] == ("kill", "--kill-whom=all", "--signal=SIGKILL", "jupyterhub.service")


def test_after_sigkill_it_waits_until_the_cgroup_is_empty():
    group = "/system.slice/jupyterhub.service"
    systemctl = RecordingSystemctl()
    left = iter([group, ""])  # after SIGKILL: still tearing down once, then empty
    systemctl._show = lambda unit, *props: {"ControlGroup": next(left) if len(systemctl.calls) == 3 else group}
    systemctl.stop_all("jupyterhub.service", grace=0.3)
    assert systemctl.calls[-1] == ("kill", "--kill-whom=all", "--signal=SIGKILL", "jupyterhub.service")
    with_sigkill = systemctl.shown[-2:]
    assert with_sigkill == ["jupyterhub.service", "jupyterhub.service"] and next(left, None) is None


def test_only_units_whose_files_are_there_are_disabled_and_removed(tmp_path):
    systemctl = RecordingSystemctl()
    (tmp_path / "jupyterhub-proxy-certs.path").write_text("[Path]\n")
    removed = remove_unit_files(systemctl, ("jupyterhub-proxy-certs.path", "jupyterhub-proxy-certs.service"), tmp_path)
    assert removed == [tmp_path / "jupyterhub-proxy-certs.path"] and not removed[0].exists()
    assert systemctl.calls == [("disable", "--now", "--quiet", "jupyterhub-proxy-certs.path")]
    assert remove_unit_files(systemctl, ("jupyterhub-proxy-certs.path",), tmp_path) == [] and len(systemctl.calls) == 1


def test_many_units_states_come_from_one_list_units_whatever_the_marks_and_columns_systemctl_adds():
    """The rows as systemctl prints them: a status mark before a failed unit, a JOB column while a unit has a job,
    descriptions with blanks, names with escapes; a unit systemd does not hold is not-found."""
    out = ("jupyter-ann-singleuser.service loaded active running /opt/barehub/conda/bin/python -m x\n"
           "\u25cf jupyter-b\\x2db-singleuser.service loaded failed failed  /opt/x y\n"
           "jupyter-cy-gpu.service loaded deactivating stop-sigterm stop /usr/bin/python3\n")
    systemctl = RecordingSystemctl()
    systemctl.run = lambda *args, check=True: (systemctl.calls.append(args),
                                               subprocess.CompletedProcess(args, 0, out, ""))[1]
    units = ["jupyter-ann-singleuser", "jupyter-b\\x2db-singleuser", "jupyter-cy-gpu", "jupyter-dan-singleuser"]
    states = systemctl.unit_states(units)
    assert [c[0] for c in systemctl.calls] == ["list-units"] and systemctl.calls[0][-4:] == tuple(
        f"{unit}.service" for unit in units)
    assert {unit: s["ActiveState"] for unit, s in states.items()} == {
        "jupyter-ann-singleuser": "active", "jupyter-b\\x2db-singleuser": "failed",
        "jupyter-cy-gpu": "deactivating", "jupyter-dan-singleuser": "inactive"}
    assert states["jupyter-dan-singleuser"]["LoadState"] == "not-found"
    assert states["jupyter-cy-gpu"]["SubState"] == "stop-sigterm"
    # by a glob (the hub's usage book): every unit listed, by its name as systemd gives it
    assert {unit: s["ActiveState"] for unit, s in systemctl.listed_states("jupyter-*.service").items()} == {
        "jupyter-ann-singleuser.service": "active", "jupyter-b\\x2db-singleuser.service": "failed",
        "jupyter-cy-gpu.service": "deactivating"}


def test_as_json_the_states_carry_the_job_a_description_could_have_faked():
    """systemd 246 and later print the list as JSON: a unit whose start job still waits in systemd's queue says so
    (a server started without waiting for systemd: local_spawner.is_up), and a description beginning with "start"
    is not taken for a job."""
    rows = [{"unit": "jupyter-ann-singleuser.service", "load": "loaded", "active": "inactive", "sub": "dead",
             "job": "start", "description": "/opt/x"},
            {"unit": "jupyter-bo-singleuser.service", "load": "loaded", "active": "active", "sub": "running",
             "description": "start the server"},
            {"unit": "other.service", "load": "loaded", "active": "active", "sub": "running", "description": "x"}]
    systemctl = RecordingSystemctl()
    systemctl.run = lambda *args, check=True: (systemctl.calls.append(args),
                                               subprocess.CompletedProcess(args, 0, json.dumps(rows), ""))[1]
    states = systemctl.unit_states(["jupyter-ann-singleuser", "jupyter-bo-singleuser", "jupyter-cy-singleuser"])
    assert "--output=json" in systemctl.calls[0]
    assert states == {
        "jupyter-ann-singleuser": {"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead", "Job": "start"},
        "jupyter-bo-singleuser": {"LoadState": "loaded", "ActiveState": "active", "SubState": "running", "Job": ""},
        "jupyter-cy-singleuser": {"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"}}


@pytest.fixture
def fake_systemd_run(tmp_path, monkeypatch):
    """A systemd-run on PATH that writes its arguments to argv.json, and fails with STDERR if that file exists."""
    script = tmp_path / "systemd-run"
    script.write_text("#!/usr/bin/env python3\nimport json, pathlib, sys\n"
                      f"here = pathlib.Path({str(tmp_path)!r})\n"
                      "(here / 'argv.json').write_text(json.dumps(sys.argv[1:]))\n"
                      "if (here / 'STDERR').exists():\n"
                      "    sys.stderr.write((here / 'STDERR').read_text()); sys.exit(1)\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    return tmp_path


def test_a_transient_unit_is_handed_to_systemd_without_waiting_for_its_job(fake_systemd_run):
    """A waiting systemd-run follows every change systemd announces until its own job is done: 200 at once cost
    systemd 8.1 CPU-s, against 2.2 without waiting (measured in the docstring's run)."""
    Systemctl().start_transient("jupyter-ann-singleuser", ["/usr/bin/python3", "-m", "x", "--flag"],
                                ["--uid=1001", "--property=MemoryMax=1G"])
    assert json.loads((fake_systemd_run / "argv.json").read_text()) == [
        "--no-block", "--quiet", "--unit=jupyter-ann-singleuser", "--uid=1001", "--property=MemoryMax=1G", "--",
        "/usr/bin/python3", "-m", "x", "--flag"]


def test_a_unit_systemd_refuses_fails_at_once_with_systemds_reason(fake_systemd_run):
    (fake_systemd_run / "STDERR").write_text("Failed to start transient service unit: Unit jupyter-ann-singleuser."
                                             "service was already loaded or has a fragment file.\n")
    with pytest.raises(BarehubError) as raised:
        Systemctl().start_transient("jupyter-ann-singleuser", ["/usr/bin/python3"], [])
    assert str(raised.value).startswith("systemd refused to start the unit jupyter-ann-singleuser: Failed to start "
                                        "transient service unit: Unit jupyter-ann-singleuser.service was already")


def test_a_failed_list_units_raises():
    systemctl = RecordingSystemctl()
    systemctl.run = lambda *args, check=True: subprocess.CompletedProcess(args, 1, "", "Failed to connect to bus")
    with pytest.raises(BarehubError, match="Failed to connect to bus"):
        systemctl.unit_states(["jupyter-ann-singleuser"])


def test_the_loaded_server_units_properties_come_from_one_show_whatever_their_number():
    """`barehub status` and uninstall: the units list-units gives, each with its properties, from one `systemctl show`
    of them all (its blocks, blank lines between, each naming its unit; a value with "=" in it stays whole)."""
    listed = "jupyter-ann-singleuser.service loaded active running x\njupyter-bo-singleuser.service loaded failed failed y\n"
    shown = ("Id=jupyter-ann-singleuser.service\nSlice=jupyterhub-users.slice\nUser=ann\nActiveState=active\n"
             "MemoryCurrent=157286400\nMemoryMax=infinity\n\n"
             "Id=jupyter-bo-singleuser.service\nSlice=jupyterhub-users.slice\nUser=b=o\nActiveState=failed\n"
             "MemoryCurrent=[not set]\nMemoryMax=2147483648\n")
    calls = []

    class Fake(Systemctl):
        def run(self, *args, check=True):
            calls.append(args)
            return subprocess.CompletedProcess(args, 0, listed if args[0] == "list-units" else shown, "")

    units = Fake().loaded_units("jupyter-*.service")
    assert [c[0] for c in calls] == ["list-units", "show"]
    assert calls[1][-3:] == ("--", "jupyter-ann-singleuser.service", "jupyter-bo-singleuser.service")
    assert units == [
        {"unit": "jupyter-ann-singleuser.service", "Slice": "jupyterhub-users.slice", "User": "ann",
         "ActiveState": "active", "MemoryCurrent": "157286400", "MemoryMax": "infinity"},
        {"unit": "jupyter-bo-singleuser.service", "Slice": "jupyterhub-users.slice", "User": "b=o",
         "ActiveState": "failed", "MemoryCurrent": "[not set]", "MemoryMax": "2147483648"}]
    assert Fake().show_many([]) == {}
