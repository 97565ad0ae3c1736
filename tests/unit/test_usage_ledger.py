"""The local usage ledger (barehub.usage_ledger): a server unit's end record from systemd's properties and its
cgroup (v1 and v2 trees made here), the sampler's running files and what it writes down for a server that ended
unobserved, the month files read back (a torn line, the months a window needs), and the unit properties the
spawner gives a server. The same against a real systemd: tests/integration/test_usage.py."""
from __future__ import annotations

import grp
import json
import os
import pwd
import time
import types
from datetime import datetime, timezone

import pytest
from traitlets.config import Config

from barehub import usage_ledger as ledger_mod
from barehub.base.errors import BarehubError
from barehub.base.records import open_no_follow
from barehub.local_spawner import SYSTEMCTL, LocalSpawner
from barehub.units import USERS_SLICE
from barehub.usage import Session, Window, summarize
from barehub.usage_ledger import (ONE_READING, UNOBSERVED, Ledger, cpu_seconds, months, peak_memory, record_stop,
                                  sample, sessions, unit_environment, unit_of_cgroup)
from tests.unit.conftest import RecordingSystemctl

ME = os.getuid()
UNIT = "jupyter-ann-singleuser.service"
CG = f"/jupyterhub.slice/{USERS_SLICE}/{UNIT}"
V1_PROC = f"""9:name=systemd:{CG}
8:pids:{CG}
4:memory:{CG}
2:cpuacct:/
1:cpu:{CG}
0::{CG}
"""
V2_PROC = f"0::{CG}\n"
DEC = datetime(2026, 12, 6, 12, tzinfo=timezone.utc).timestamp()


def epoch(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def show_block(unit=UNIT, invocation="inv1", state="active", start=DEC - 3600, cpu_ns="7500000000",
               memory="104857600", profile="1 GPU: 8 CPUs, 32 GB %n", server="", user=str(ME)) -> str:
    env = (f'"PATH=/usr/bin:/bin" {ledger_mod.PROFILE_ENV}={ledger_mod.encode(profile)} '
           f'{ledger_mod.SERVER_ENV}={ledger_mod.encode(server)}')
    return "\n".join([f"Id={unit}", f"User={user}", f"InvocationID={invocation}", f"ActiveState={state}",
                      f"ActiveEnterTimestamp=@{start:.0f}", f"ExecMainStartTimestamp=@{start:.0f}",
                      f"CPUUsageNSec={cpu_ns}", f"MemoryCurrent={memory}",
                      f"ControlGroup=/jupyterhub.slice/{USERS_SLICE}/{unit}", f"Slice={USERS_SLICE}",
                      f"Environment={env}"]) + "\n"


def systemctl_showing(*blocks: str) -> RecordingSystemctl:
    return RecordingSystemctl(answers={"show": "\n".join(blocks)})


@pytest.fixture
def v1(tmp_path):
    """A cgroup v1 tree (hybrid, as this project's test containers: cpu and cpuacct mounted apart)."""
    root = tmp_path / "cgroup"
    (root / "memory" / CG.lstrip("/")).mkdir(parents=True)
    (root / "memory" / CG.lstrip("/") / "memory.max_usage_in_bytes").write_text("536870912\n")
    (root / "unified" / CG.lstrip("/")).mkdir(parents=True)
    (root / "unified" / CG.lstrip("/") / "cpu.stat").write_text("usage_usec 4200000\nuser_usec 4000000\n")
    return root


@pytest.fixture
def v2(tmp_path):
    root = tmp_path / "cgroup2"
    (root / CG.lstrip("/")).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory pids\n")
    (root / CG.lstrip("/") / "memory.peak").write_text("268435456\n")
    (root / CG.lstrip("/") / "cpu.stat").write_text("usage_usec 3100000\n")
    return root


def test_the_unit_is_found_from_the_kernels_cgroup_line_on_v1_and_v2():
    assert unit_of_cgroup(V1_PROC) == UNIT
    assert unit_of_cgroup(V2_PROC) == UNIT
    assert unit_of_cgroup(f"1:name=systemd:{CG}\n") == UNIT  # pure v1: systemd's own hierarchy
    assert unit_of_cgroup(f"0::{CG}/.control\n") == UNIT  # a control process of a delegated unit
    for elsewhere in ("0::/system.slice/jupyterhub.service\n", f"0::/{USERS_SLICE}/sshd.service\n",
                      "0::/user.slice/user-1000.slice/jupyter-ann-singleuser.service\n", "0::/\n", ""):
        with pytest.raises(BarehubError, match="not in a server unit"):
            unit_of_cgroup(elsewhere)


def test_peak_memory_and_cpu_are_read_from_a_v1_tree(v1):
    assert peak_memory(CG, v1) == 512 * 2 ** 20
    # systemd's own counter when it has one; else the unified hierarchy's (a hybrid host with cpuacct apart)
    assert cpu_seconds({"CPUUsageNSec": "9000000000", "ControlGroup": CG}, v1) == 9.0
    assert cpu_seconds({"CPUUsageNSec": "[not set]", "ControlGroup": CG}, v1) == 4.2
    (v1 / "cpuacct" / CG.lstrip("/")).mkdir(parents=True)
    (v1 / "cpuacct" / CG.lstrip("/") / "cpuacct.usage").write_text("5500000000\n")
    assert cpu_seconds({"CPUUsageNSec": "18446744073709551615", "ControlGroup": CG}, v1) == 5.5


def test_peak_memory_and_cpu_are_read_from_a_v2_tree(v2):
    assert peak_memory(CG, v2) == 256 * 2 ** 20
    assert cpu_seconds({"CPUUsageNSec": "[not set]", "ControlGroup": CG}, v2) == 3.1
    (v2 / CG.lstrip("/") / "memory.peak").unlink()  # a kernel before 5.19
    assert peak_memory(CG, v2) is None
    assert peak_memory("", v2) is None and cpu_seconds({}, v2) is None


def test_a_link_in_a_cgroup_files_place_is_not_followed(v2, tmp_path):
    (tmp_path / "elsewhere").write_text("999\n")
    (v2 / CG.lstrip("/") / "memory.peak").unlink()
    (v2 / CG.lstrip("/") / "memory.peak").symlink_to(tmp_path / "elsewhere")
    assert peak_memory(CG, v2) is None


def test_the_profile_and_server_survive_systemds_environment_quoting():
    block = show_block(profile='1 GPU: "8" CPUs, 32 GB %n', server="gpu-1")
    env = block.split("Environment=", 1)[1]
    assert unit_environment(env) == {ledger_mod.PROFILE_ENV: '1 GPU: "8" CPUs, 32 GB %n',
                                     ledger_mod.SERVER_ENV: "gpu-1"}


def test_a_stop_writes_the_session_with_its_samples_and_it_reads_back(prefix, v1):
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    me, my_group = pwd.getpwuid(ME).pw_name, grp.getgrgid(os.getgid()).gr_name
    ledger.write_sample(UNIT, {"unit": UNIT, "invocation": "inv1", "user": me, "group": my_group,
                               "profile": "1 GPU: 8 CPUs, 32 GB %n",
                               "server": "", "start": DEC - 3600, "samples": 4, "mem_sum_bytes": 400 * 2 ** 20,
                               "mem_peak_bytes": 150 * 2 ** 20, "cpu_s": 6.0, "last_at": DEC - 30})
    systemctl = systemctl_showing(show_block())
    session = record_stop(prefix, systemctl, V1_PROC, DEC, v1, own_cpu=lambda: 0.25)
    assert systemctl.calls == [("show", "--timestamp=unix", f"--property={','.join(ledger_mod.PROPERTIES)}", UNIT)]
    assert session.id == f"{UNIT}@inv1" and session.start == DEC - 3600 and session.end == DEC
    assert session.cpu_s == 7.25  # systemd's counter at the stop (not the last sample's), less this command's own
    assert session.mem_avg_bytes == 100 * 2 ** 20  # the samples' average
    assert session.mem_peak_bytes == 512 * 2 ** 20  # the cgroup's own peak
    assert session.profile == "1 GPU: 8 CPUs, 32 GB %n" and session.server == "" and session.note == ""
    assert (session.user, session.group) == (me, my_group)
    assert not ledger.sample_file(UNIT).exists()
    month = prefix.usage_dir / "2026-12.jsonl"
    assert (os.stat(month).st_mode & 0o777, os.stat(prefix.usage_dir).st_mode & 0o777) == (0o600, 0o700)
    assert json.loads(month.read_text())["format"] == 1
    read = sessions(prefix, Window(epoch(2026, 12, 1), DEC + 10), DEC + 10, RecordingSystemctl(), v1)
    assert read == [session]


def test_a_session_shorter_than_a_sample_takes_its_memory_at_the_stop(prefix, v2):
    session = record_stop(prefix, systemctl_showing(show_block(memory="3000000", server="gpu-1",
                                                               unit="jupyter-ann-gpu\\x2d1.service")),
                          V2_PROC.replace(UNIT, "jupyter-ann-gpu\\x2d1.service"), DEC, v2)
    assert session.mem_avg_bytes == 3000000 and session.note == ONE_READING and session.server == "gpu-1"


def test_a_torn_last_line_is_skipped_and_the_next_line_stays_whole(prefix):
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    first = Session("local", "u@1", "ann", "ann", "", DEC - 100, DEC - 50, 1.0)
    ledger.append(first)
    with open(ledger.month_file(DEC), "ab") as f:
        f.write(b'{"source":"local","id":"u@torn","us')  # a crash mid-write
    second = Session("local", "u@2", "ann", "ann", "", DEC - 40, DEC - 10, 2.0)
    ledger.append(second)
    assert [s.id for s in sessions(prefix, Window(DEC - 3600, DEC), DEC, RecordingSystemctl())] == ["u@1", "u@2"]


def test_a_session_is_filed_by_the_month_of_its_end_and_read_from_the_windows_months(prefix):
    assert months(epoch(2026, 11, 15), epoch(2027, 2, 1)) == ["2026-11", "2026-12", "2027-01", "2027-02"]
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    straddles = Session("local", "u@a", "ann", "ann", "", epoch(2026, 11, 30, 22), epoch(2026, 12, 1, 2), 3600.0)
    october = Session("local", "u@b", "ann", "ann", "", epoch(2026, 10, 3), epoch(2026, 10, 4), 10.0)
    for session in (straddles, october):
        ledger.append(session)
    assert sorted(p.name for p in prefix.usage_dir.glob("*.jsonl")) == ["2026-10.jsonl", "2026-12.jsonl"]
    november = Window(epoch(2026, 11, 1), epoch(2026, 12, 1))
    found = sessions(prefix, november, DEC, RecordingSystemctl())
    assert [s.id for s in found] == ["u@a"]  # read from December's file, though the window is November
    report = summarize(found, november, "user", DEC)
    assert report.total.cpu_hours == pytest.approx(0.5)  # the half inside November


def test_a_server_that_ended_unobserved_is_written_from_its_last_sample(prefix, v1):
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    # two sampler passes while ann's server runs
    for n, memory in enumerate(("100", "300")):
        sample(prefix, systemctl_showing(show_block(memory=memory, cpu_ns=str((n + 1) * 10 ** 9))), DEC + 60 * n, v1)
    running = json.loads(ledger.sample_file(UNIT).read_text())
    assert (running["samples"], running["mem_sum_bytes"], running["cpu_s"]) == (2, 400, 2.0)
    # the power goes; after the reboot the unit is gone (or runs anew with another invocation)
    written = sample(prefix, systemctl_showing(show_block(invocation="inv2", memory="50")), DEC + 600, v1)
    assert [(s.id, s.end, s.cpu_s, s.mem_avg_bytes, s.note) for s in written] == \
        [(f"{UNIT}@inv1", DEC + 60, 2.0, 200, UNOBSERVED)]
    assert json.loads(ledger.sample_file(UNIT).read_text())["invocation"] == "inv2"
    assert sample(prefix, RecordingSystemctl(), DEC + 660, v1)[0].id == f"{UNIT}@inv2"
    assert not ledger.sample_file(UNIT).exists()
    ids = [s.id for s in sessions(prefix, Window(DEC - 7200, DEC + 700), DEC + 700, RecordingSystemctl(), v1)]
    assert ids == [f"{UNIT}@inv1", f"{UNIT}@inv2"]


def test_a_deactivating_unit_is_left_to_its_own_stop_record(prefix, v1):
    sample(prefix, systemctl_showing(show_block()), DEC, v1)
    assert sample(prefix, systemctl_showing(show_block(state="deactivating", memory="999")), DEC + 60, v1) == []
    assert json.loads(Ledger(prefix).sample_file(UNIT).read_text())["samples"] == 1


def test_running_servers_are_read_live_and_one_not_yet_written_down_is_not_lost(prefix, v1):
    sample(prefix, systemctl_showing(show_block(memory="100")), DEC - 60, v1)
    other = "jupyter-bob-singleuser.service"
    Ledger(prefix).write_sample(other, {"unit": other, "invocation": "old", "user": "bob", "group": "bob",
                                        "profile": "", "server": "", "start": DEC - 7200, "samples": 1,
                                        "mem_sum_bytes": 10, "mem_peak_bytes": 10, "cpu_s": 1.0,
                                        "last_at": DEC - 3600})
    found = sessions(prefix, Window(DEC - 86400, DEC), DEC, systemctl_showing(show_block(memory="300")), v1)
    live, lost = sorted(found, key=lambda s: s.user != pwd_name())
    assert (live.end, live.cpu_s, live.mem_avg_bytes) == (None, 7.5, 200)  # its sample and the reading now
    assert (lost.user, lost.end, lost.note) == ("bob", DEC - 3600, UNOBSERVED)
    assert Ledger(prefix).sample_file(other).exists()  # reading writes nothing


def test_the_hubs_book_takes_running_figures_from_the_samples_and_shows_only_a_unit_started_since(prefix, v1):
    """The hub's minutely book (from_samples): one list-units; `show` only of a unit without a sample file yet."""
    sample(prefix, systemctl_showing(show_block(memory="100", cpu_ns="2000000000")), DEC - 60, v1)
    new, gone = "jupyter-cy-singleuser.service", "jupyter-bob-singleuser.service"
    Ledger(prefix).write_sample(gone, {"unit": gone, "invocation": "old", "user": "bob", "group": "bob",
                                       "profile": "", "server": "", "start": DEC - 7200, "samples": 1,
                                       "mem_sum_bytes": 10, "mem_peak_bytes": 10, "cpu_s": 1.0,
                                       "last_at": DEC - 3600})
    systemctl = RecordingSystemctl(units={UNIT: {}, new: {}}, answers={"show": show_block(
        unit=new, invocation="inv9", start=DEC - 10, cpu_ns="500000000", memory="300")})
    found = sessions(prefix, Window(DEC - 86400, DEC), DEC, systemctl, v1, from_samples=True)
    by_unit = {s.id.split("@")[0]: s for s in found}
    assert set(by_unit) == {UNIT, new, gone}
    assert (by_unit[UNIT].end, by_unit[UNIT].cpu_s, by_unit[UNIT].mem_avg_bytes) == (None, 2.0, 100)  # its sample
    assert (by_unit[new].end, by_unit[new].cpu_s, by_unit[new].start) == (None, 0.5, DEC - 10)  # shown alone
    assert (by_unit[gone].end, by_unit[gone].note) == (DEC - 3600, UNOBSERVED)
    shows = [call for call in systemctl.calls if call[0] == "show"]
    assert len(shows) == 1 and shows[0][-1] == new and UNIT not in shows[0]
    assert [call[0] for call in systemctl.calls].count("list-units") == 1
    # the live way (`barehub usage`) reads every running unit now: a second reading of ann's memory
    live = sessions(prefix, Window(DEC - 86400, DEC), DEC, systemctl_showing(show_block(memory="300")), v1)
    assert [s.mem_avg_bytes for s in live if s.id.startswith(UNIT)] == [200]


def pwd_name() -> str:
    return pwd.getpwuid(ME).pw_name


def test_a_link_planted_as_a_month_file_is_refused(prefix, tmp_path):
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    (tmp_path / "target").write_text("")
    ledger.month_file(DEC).symlink_to(tmp_path / "target")
    with pytest.raises(BarehubError, match="symbolic link"):
        ledger.append(Session("local", "u@1", "ann", "ann", "", DEC - 1, DEC, 0.0))
    assert (tmp_path / "target").read_text() == ""


def test_ten_thousand_ended_sessions_read_fast(prefix):
    ledger = Ledger(prefix)
    ledger.ensure_dirs()
    line = json.dumps({"source": "local", "id": "u@x", "user": "ann", "group": "ann", "profile": "", "start": DEC - 7200,
                       "end": DEC - 3600, "cpu_s": 1.0, "gpus": 0, "mem_peak_bytes": 1, "mem_avg_bytes": 1,
                       "server": "", "note": "", "format": 1})
    ledger.month_file(DEC).write_text((line + "\n") * 10000)
    start = time.perf_counter()
    found = sessions(prefix, Window(epoch(2026, 12, 1), DEC), DEC, RecordingSystemctl())
    assert len(found) == 10000 and time.perf_counter() - start < 2.0  # measured: ~0.06 s here


def test_the_server_unit_gets_the_accounting_beside_the_sites_own_properties(prefix):
    user = types.SimpleNamespace(name="ann", id=7, url="/user/ann/", spawners={})
    site = {"RuntimeDirectory": "jupyterhub/users/{USERID}", "ExecStopPost": "/usr/local/bin/site-hook",
            "Environment": "SITE=1"}
    spawner = LocalSpawner(user=user, orm_spawner=types.SimpleNamespace(name="gpu-1", server=None),
                           config=Config({"SystemdSpawner": {"unit_extra_properties": site}}),
                           _deprecated_db_session=None)
    spawner.user_options = {"profile": "1 GPU: 8 CPUs"}
    spawner.barehub_prefix = lambda: prefix.prefix
    properties = spawner.server_properties()
    assert properties["CPUAccounting"] == properties["MemoryAccounting"] == "yes"
    assert properties["ExecStopPost"] == [
        f"-+{SYSTEMCTL} kill --kill-who=main --signal=SIGWINCH jupyterhub.service",  # END_NOTICE
        "/usr/local/bin/site-hook",
        f"-+{prefix.prefix}/conda/bin/python -I -m barehub.usage_ledger stop --prefix {prefix.prefix}"]
    assert properties["Environment"][0] == "SITE=1"
    assert unit_environment(" ".join(properties["Environment"])) == {ledger_mod.PROFILE_ENV: "1 GPU: 8 CPUs",
                                                                     ledger_mod.SERVER_ENV: "gpu-1"}
    assert properties["RuntimeDirectory"] == "jupyterhub/users/{USERID}-gpu-1"
    # upstream's start expands {USERNAME}/{USERID} in each property, lists included
    spawner.username_template = "{USERNAME}"
    expanded = {key: spawner._expand_user_vars(value) for key, value in properties.items()}
    assert expanded["RuntimeDirectory"] == "jupyterhub/users/7-gpu-1"
    assert expanded["ExecStopPost"] == properties["ExecStopPost"]


def test_a_reader_needs_no_write_access(prefix, v1, monkeypatch):
    """The hub reads usage with the prefix read-only (ProtectSystem=strict): the lock is taken on a read-only open,
    and a ledger nothing was ever written to (no lock file yet) reads as empty."""
    Ledger(prefix).ensure_dirs()
    assert sessions(prefix, Window(DEC - 60, DEC), DEC, RecordingSystemctl(), v1) == []
    assert not Ledger(prefix).lock_path.exists()
    Ledger(prefix).append(Session("local", "u@1", "ann", "ann", "", DEC - 10, DEC - 5, 1.0))
    os.close(Ledger(prefix).lock())

    def read_only(path, flags=os.O_RDONLY, mode=0o600):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise OSError(30, "Read-only file system", str(path))
        return open_no_follow(path, flags, mode)
    monkeypatch.setattr(ledger_mod, "open_no_follow", read_only)
    assert [s.id for s in sessions(prefix, Window(DEC - 60, DEC), DEC, RecordingSystemctl(), v1)] == ["u@1"]
