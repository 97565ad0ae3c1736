"""The systemd wrapper's composite steps: a stop that leaves nothing behind in the unit's cgroup, removing units."""
import itertools

from barehub.systemd import Systemctl, remove_unit_files


def recorder(monkeypatch, cgroups):
    systemctl, calls = Systemctl(), []
    monkeypatch.setattr(systemctl, "run", lambda *args, check=True: calls.append(args))
    monkeypatch.setattr(systemctl, "show", lambda unit, *props: {"ControlGroup": next(cgroups)})
    return systemctl, calls


def test_a_clean_stop_sends_nothing_more(monkeypatch):
    systemctl, calls = recorder(monkeypatch, iter([""]))
    systemctl.stop_all("jupyterhub.service")
    assert calls == [("stop", "jupyterhub.service")]


def test_what_a_killmode_process_stop_left_gets_sigterm(monkeypatch):
    group = "/system.slice/jupyterhub.service"
    systemctl, calls = recorder(monkeypatch, iter([group, group, ""]))
    systemctl.stop_all("jupyterhub.service")
    assert calls == [("stop", "jupyterhub.service"), ("kill", "--kill-whom=all", "jupyterhub.service")]


def test_what_ignores_sigterm_gets_sigkill_after_the_grace(monkeypatch):
    systemctl, calls = recorder(monkeypatch, itertools.repeat("/system.slice/jupyterhub.service"))
    systemctl.stop_all("jupyterhub.service", grace=0.3)
    assert calls[-1] == ("kill", "--kill-whom=all", "--signal=SIGKILL", "jupyterhub.service")


def test_only_units_whose_files_are_there_are_disabled_and_removed(monkeypatch, tmp_path):
    systemctl, calls = recorder(monkeypatch, iter([]))
    (tmp_path / "jupyterhub-proxy-certs.path").write_text("[Path]\n")
    removed = remove_unit_files(systemctl, ("jupyterhub-proxy-certs.path", "jupyterhub-proxy-certs.service"), tmp_path)
    assert removed == [tmp_path / "jupyterhub-proxy-certs.path"] and not removed[0].exists()
    assert calls == [("disable", "--now", "--quiet", "jupyterhub-proxy-certs.path")]
    assert remove_unit_files(systemctl, ("jupyterhub-proxy-certs.path",), tmp_path) == [] and len(calls) == 1
