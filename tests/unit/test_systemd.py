"""The systemd wrapper's composite steps: a stop that leaves nothing behind in the unit's cgroup, removing units."""
import itertools

from barehub.systemd import remove_unit_files
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
