"""LocalSpawner's start: the unit her last server left behind, which systemd-run cannot reuse while systemd holds it
loaded; the systemd-run it sends; the port and its listener (systemd through RecordingSystemctl; the real one:
tests/integration/test_install.py)."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import pwd
import socket
import subprocess
import time
import types

import pytest

from barehub import local_spawner
from barehub.listeners import listening_on
from tests.unit.conftest import RecordingSystemctl

UNIT = "jupyter-ann-singleuser"
HERS = pwd.getpwnam("nobody").pw_uid  # the account server_of() runs servers as
LOOPBACK, ANY, OTHER = (ipaddress.ip_address(a) for a in ("127.0.0.1", "0.0.0.0", "127.0.0.2"))


class Lingering(RecordingSystemctl):
    """systemd holding the unit loaded (in `state`) until it has been asked `holds` times after a reset-failed, as
    it does until it knows the unit's cgroup is empty; `holds=None`: for ever (another unit refers to it). Its
    list-units (a question, counted in `listed`) gives the state as systemctl's JSON."""

    def __init__(self, state: dict[str, str], holds: int | None):
        super().__init__()
        self.state, self.holds, self.asked_after_reset, self.listed = state, holds, 0, 0

    def run(self, *args: str, check: bool = True):
        if args[0] != "list-units":
            return super().run(*args, check=check)
        self.listed += 1
        rows = [] if self.state["LoadState"] == "not-found" else [
            {"unit": f"{UNIT}.service", "load": self.state["LoadState"], "active": self.state["ActiveState"],
             "sub": self.state.get("SubState", "dead")}]
        return subprocess.CompletedProcess(["systemctl", *args], 0, stdout=json.dumps(rows), stderr="")

    def show(self, unit: str, *props: str) -> dict[str, str]:
        self.shown.append(unit)
        if ("reset-failed", unit) in self.calls:
            self.asked_after_reset += 1
            if self.holds is not None and self.asked_after_reset > self.holds:
                return {"LoadState": "not-found", "ActiveState": "inactive"}
        return {p: self.state[p] for p in props if p in self.state}


@pytest.fixture(autouse=True)
def her_server_listens(monkeypatch):
    """The server's port is listened on by her account (the real look: test_install.py, another account first)."""
    monkeypatch.setattr(local_spawner.listeners, "listening_on",
                        lambda ports: {port: {(LOOPBACK, HERS)} for port in ports})
    monkeypatch.setattr(local_spawner, "LISTENERS", local_spawner.SharedQuery(local_spawner.listening))


@pytest.fixture
def started(monkeypatch):
    """The unit's start (its environment file and systemd-run) replaced by a record of which systemctl calls came
    before it; the port is 8888."""
    runs = []

    def start_unit(spawner, systemctl, unit, *args):
        runs.append(list(spawner.systemd.calls))
    monkeypatch.setattr(local_spawner.LocalSpawner, "start_unit", start_unit)
    monkeypatch.setattr(local_spawner.SystemdSpawner, "get_env", lambda self: {})  # (JupyterHub's needs a hub)
    monkeypatch.setattr(local_spawner, "random_port", lambda: 8888)
    monkeypatch.setattr(local_spawner, "PORTS", local_spawner.PORTS.__class__())
    return runs


def spawner_with(monkeypatch, systemd: RecordingSystemctl) -> local_spawner.LocalSpawner:
    monkeypatch.setattr(local_spawner, "Systemctl", lambda timeout=120: systemd)
    user = types.SimpleNamespace(name="ann", id=7, url="/user/ann/", spawners={})
    spawner = local_spawner.LocalSpawner(user=user, orm_spawner=types.SimpleNamespace(name="", server=None),
                                         _deprecated_db_session=None)
    spawner.systemd = systemd
    spawner.record_end = lambda reason: setattr(spawner, "why", reason)
    monkeypatch.setattr(spawner, "server_properties", lambda: {})
    monkeypatch.setattr(spawner, "unit_is_hers", lambda properties: True)
    spawner.username_template = "nobody"  # an account of this machine, for upstream's and barehub's getpwnam
    return spawner


def test_a_unit_systemd_still_holds_after_her_last_server_is_waited_for_before_systemd_run(monkeypatch, started):
    """The defect, as a full test run met it: the stop had ended 0.1 s before, the unit was still loaded, and
    systemd-run refused its name; the server came up only after upstream's 60 s start timeout, as a failure."""
    systemd = Lingering({"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead"}, holds=3)
    assert asyncio.run(spawner_with(monkeypatch, systemd).start()) == ("127.0.0.1", 8888)
    [calls_before_systemd_run] = started
    assert calls_before_systemd_run == [("reset-failed", UNIT)]
    assert systemd.asked_after_reset == 4  # systemd-run came only once systemd had let the name go


def test_a_unit_of_hers_still_running_is_stopped_and_let_go_of_before_the_new_one_starts(monkeypatch, started):
    systemd = Lingering({"LoadState": "loaded", "ActiveState": "active", "SubState": "running"}, holds=1)
    asyncio.run(spawner_with(monkeypatch, systemd).start())
    assert started == [[("stop", UNIT), ("reset-failed", UNIT)]]


def test_a_unit_systemd_never_lets_go_of_fails_the_start_at_once_with_what_holds_it(monkeypatch, started):
    """Another unit that refers to hers keeps it loaded for ever: the start fails after the bounded wait, saying
    which unit and in which state, instead of upstream's silent 60 s."""
    monkeypatch.setattr(local_spawner, "UNIT_RELEASE_S", 0.5)
    systemd = Lingering({"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed"}, holds=None)
    spawner = spawner_with(monkeypatch, systemd)
    begun = time.monotonic()
    with pytest.raises(RuntimeError) as raised:
        asyncio.run(spawner.start())
    assert time.monotonic() - begun < 3
    assert f"systemd still holds the unit {UNIT} of the last server after 0.5 s" in str(raised.value)
    assert "LoadState=loaded, ActiveState=failed, SubState=failed" in str(raised.value)
    assert f"systemctl status {UNIT}" in str(raised.value)
    assert started == [] and spawner.why.startswith("did not start: systemd still holds")


def test_no_unit_left_costs_only_the_shared_list_units(monkeypatch, started):
    """No `systemctl show` of her unit, nor upstream's is-active and is-failed: the one list-units that every
    server starting at that moment shares says systemd holds no unit of her server's name."""
    systemd = Lingering({"LoadState": "not-found", "ActiveState": "inactive"}, holds=0)
    asyncio.run(spawner_with(monkeypatch, systemd).start())
    assert started == [[]] and systemd.shown == [] and systemd.listed == 1


@pytest.fixture
def systemd_run(monkeypatch, tmp_path):
    """The start with systemd (systemctl and systemd-run) replaced by a record of each server's unit and the URL its
    environment file tells it to serve at; every unit is running once started."""
    from jupyterhub.spawner import Spawner

    runs: dict[str, str] = {}

    def environment_file(directory, unit, env):
        runs[unit] = env["JUPYTERHUB_SERVICE_URL"]
        return f"{directory}/{unit}.env"

    monkeypatch.setattr(local_spawner, "environment_file", environment_file)
    monkeypatch.setattr(local_spawner, "RUN_ROOT", str(tmp_path))
    # JupyterHub's get_env needs a whole hub; what matters here is the port it puts in the server's URL
    monkeypatch.setattr(Spawner, "get_env", lambda self: {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}/"})
    monkeypatch.setattr(local_spawner, "PORTS", local_spawner.PORTS.__class__())
    return runs


def drawn(monkeypatch, *ports: int):
    """The numbers the kernel hands out for port 0, in turn: to the start's random_port() and to barehub's redraws."""
    numbers = iter(ports)
    monkeypatch.setattr(local_spawner, "random_port", lambda: next(numbers))
    local_spawner.PORTS.draw = lambda: next(numbers)


def server_of(monkeypatch, name: str) -> local_spawner.LocalSpawner:
    systemd = RecordingSystemctl(show=lambda unit, *props: {"LoadState": "not-found"})
    spawner = spawner_with(monkeypatch, systemd)
    spawner.user = types.SimpleNamespace(name=name, id=hash(name) % 1000, url=f"/user/{name}/", spawners={})
    spawner.unit_name = spawner.unit_name_for("")
    spawner.cmd = ["python3", "-m", "tinyserver"]  # (found on PATH, as systemd-run is given it: by its full path)
    spawner.poll = lambda: asyncio.sleep(0)  # (None: running)
    return spawner


def test_servers_starting_at_once_are_never_handed_the_same_port(monkeypatch, systemd_run):
    """The defect, as a class of 200 met it: random_port() gave two starting servers one number, and the hub routed
    one user's /user/NAME/ to the other's server. Here the second is handed another, and told that one."""
    drawn(monkeypatch, 41001, 41001, 41002)
    ann, bob = server_of(monkeypatch, "ann"), server_of(monkeypatch, "bob")

    async def class_at_nine():
        return await asyncio.gather(ann.start(), bob.start())

    assert asyncio.run(class_at_nine()) == [("127.0.0.1", 41001), ("127.0.0.1", 41002)]
    assert systemd_run == {"jupyter-ann-singleuser": "http://127.0.0.1:41001/",
                           "jupyter-bob-singleuser": "http://127.0.0.1:41002/"}


def test_a_port_is_handed_out_again_once_its_server_has_ended(monkeypatch, systemd_run):
    drawn(monkeypatch, 41001, 41001, 41002, 41001)
    ann, bob, cy = server_of(monkeypatch, "ann"), server_of(monkeypatch, "bob"), server_of(monkeypatch, "cy")
    asyncio.run(ann.start())
    asyncio.run(bob.start())  # 41001 is ann's: bob gets 41002
    asyncio.run(ann.stop())
    assert asyncio.run(cy.start()) == ("127.0.0.1", 41001)
    assert bob.port == 41002


TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A029 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 5551 1 0
   1: 0100007F:A029 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1003        0 5552 1 0
   2: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5553 1 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:A029 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1002        0 5554 1 0
"""


def test_the_accounts_listening_on_a_port_are_read_from_both_tcp_tables(tmp_path):
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "tcp").write_text(TCP)
    (tmp_path / "net" / "tcp6").write_text(TCP6)
    # 41001 (0xA029): uid 1001 on 127.0.0.1 and 1002 on IPv6's any address; a connection's 1003 is not listening
    assert listening_on({41001, 8080, 22}, tmp_path) == {41001: {(LOOPBACK, 1001), (ipaddress.ip_address("::"), 1002)},
                                                          8080: {(ANY, 0)}}


def test_what_answers_a_connection_is_the_socket_on_its_address_else_one_on_any():
    """As the kernel picks: the account on 127.0.0.1 gets the hub's connections to it, whoever listens on 0.0.0.0;
    with nobody on 127.0.0.1, the one on any address gets them; one on 127.0.0.2 never does."""
    assert local_spawner.listeners.answering({(LOOPBACK, 1001), (ANY, 1009), (OTHER, 1009)}, "127.0.0.1") == {1001}
    assert local_spawner.listeners.answering({(ANY, 1009), (OTHER, 1001)}, "127.0.0.1") == {1009}
    assert local_spawner.listeners.answering({(OTHER, 1009)}, "127.0.0.1") == set()


def test_the_real_tables_name_this_process_as_the_one_listening():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        assert listening_on({s.getsockname()[1]}) == {}  # bound, not listening yet
        s.listen()
        assert listening_on({s.getsockname()[1]}) == {s.getsockname()[1]: {(LOOPBACK, os.geteuid())}}


def listened(monkeypatch, *answers: set[int]) -> list:
    """Who listens on the server's port ({(address, uid)}) at each look, in turn (the last one for ever)."""
    looks = []

    def listening(ports):
        looks.append(sorted(ports))
        return {port: answers[min(len(looks), len(answers)) - 1] for port in ports}
    monkeypatch.setattr(local_spawner.listeners, "listening_on", listening)
    return looks


def test_a_port_another_program_listens_on_is_never_routed_to(monkeypatch, systemd_run):
    """Another account bound the port between its choice and her server's bind: her start fails, saying so,
    instead of JupyterHub routing /user/ann/ (and her server's cookie) to that program."""
    drawn(monkeypatch, 41001)
    listened(monkeypatch, {(ANY, 1009)})  # the hub's connections to 127.0.0.1 would reach it
    ann = server_of(monkeypatch, "ann")
    with pytest.raises(local_spawner.web.HTTPError) as raised:
        asyncio.run(ann.start())
    assert raised.value.status_code == 503
    assert "Port 41001, handed to your server, was taken by another account's program" in raised.value.log_message
    assert ann.why.startswith("did not start: ")
    assert 41001 not in local_spawner.PORTS.held  # handed out again once she starts anew


def test_the_start_returns_once_her_own_server_listens(monkeypatch, systemd_run):
    drawn(monkeypatch, 41001)
    looks = listened(monkeypatch, set(), set(), {(LOOPBACK, HERS)})
    assert asyncio.run(server_of(monkeypatch, "ann").start()) == ("127.0.0.1", 41001)
    assert looks == [[41001]] * 3


def test_servers_starting_together_share_each_look_at_the_ports(monkeypatch, systemd_run):
    """One read of the kernel's tables answers every server starting at that moment (a class of 200 would
    otherwise read /proc/net/tcp 400-2000 times a second). Each server's systemd-run runs in a thread of its own,
    so they come to their first look a little apart: a few reads for 20 servers, where each alone would be 40."""
    ports = list(range(41001, 41021))
    drawn(monkeypatch, *ports)
    looks = listened(monkeypatch, set(), {(LOOPBACK, HERS)})
    servers = [server_of(monkeypatch, f"u{i}") for i in range(20)]

    async def together():
        return await asyncio.gather(*(server.start() for server in servers))

    assert [port for _, port in asyncio.run(together())] == ports
    assert len(looks) <= 6 and sorted(set().union(*looks[1:])) == ports


def test_a_server_that_ends_before_it_listens_fails_the_start_at_once(monkeypatch, systemd_run):
    drawn(monkeypatch, 41001)
    listened(monkeypatch, set())
    ann = server_of(monkeypatch, "ann")
    polls = iter([None, None, 1])
    ann.poll = lambda: asyncio.sleep(0, next(polls))
    begun = time.monotonic()
    with pytest.raises(RuntimeError, match="ended before it listened on port 41001"):
        asyncio.run(ann.start())
    assert time.monotonic() - begun < 3


def test_another_account_on_another_address_of_the_port_does_not_stop_her_start(monkeypatch, systemd_run):
    """127.0.0.2 on her port never gets the hub's connections: no refusal to be had by binding there."""
    drawn(monkeypatch, 41001)
    listened(monkeypatch, {(OTHER, 1009), (LOOPBACK, HERS)})
    assert asyncio.run(server_of(monkeypatch, "ann").start()) == ("127.0.0.1", 41001)


def test_a_server_is_one_systemd_run_that_does_not_wait_with_upstreams_settings(monkeypatch, systemd_run, tmp_path):
    """What a start sends systemd: the list-units every server starting at that moment shares, then one
    systemd-run --no-block (Systemctl.start_transient) with what upstream's start gave it (its account, its
    settings as properties, the environment file, the program by its full path); not upstream's is-active and
    is-failed before it, nor a systemd-run that waits (a class of 200: ~12 CPU-s of systemd's and the systemd-runs'
    time, bench/shipped-results.md)."""
    drawn(monkeypatch, 41001)
    ann = server_of(monkeypatch, "ann")
    monkeypatch.setattr(ann, "server_properties", lambda: {"ExecStopPost": ["/bin/true {USERID}", "/bin/false"],
                                                           "RuntimeDirectory": "jupyterhub/users/{USERID}"})
    ann.mem_limit, ann.cpu_limit, ann.isolate_tmp, ann.readonly_paths = "1G", 1.5, True, ["/srv/{USERNAME}"]
    assert asyncio.run(ann.start()) == ("127.0.0.1", 41001)
    nobody, uid = pwd.getpwnam("nobody"), ann.user.id
    assert [call[0] for call in ann.systemd.calls] == ["list-units", "systemd-run"]
    assert ann.systemd.calls[1] == (
        "systemd-run", "--unit=jupyter-ann-singleuser", f"--working-directory={nobody.pw_dir}",
        f"--uid={nobody.pw_uid}", f"--gid={nobody.pw_gid}",
        f"--property=RuntimeDirectory=jupyterhub/users/{uid}", "--property=RuntimeDirectoryMode=700",
        "--property=RuntimeDirectoryPreserve=restart", "--property=OOMPolicy=continue",
        "--property=PrivateTmp=yes", "--property=MemoryAccounting=yes", f"--property=MemoryMax={1024 ** 3}",
        "--property=CPUAccounting=yes", "--property=CPUQuota=150%", "--property=NoNewPrivileges=yes",
        "--property=ReadOnlyDirectories=/srv/ann",
        f"--property=ExecStopPost=/bin/true {uid}", "--property=ExecStopPost=/bin/false",
        f"--property=EnvironmentFile={tmp_path}/jupyterhub/users/{uid}/jupyter-ann-singleuser.env",
        "--", __import__("shutil").which("python3"), "-m", "tinyserver")
    assert systemd_run == {"jupyter-ann-singleuser": "http://127.0.0.1:41001/"}


def test_a_server_whose_start_systemd_has_not_run_yet_is_starting_not_ended(monkeypatch):
    """systemd-run --no-block returns once systemd has queued the start: until systemd runs it, the unit is
    loaded, inactive, with a start job. Taken for ended, the start would have failed (and her port been handed to
    another server) whenever systemd was slower than the hub's first look."""
    queued = {"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead", "Job": "start"}
    assert local_spawner.is_up(queued) and local_spawner.is_up({**queued, "ActiveState": "activating"})
    assert not local_spawner.is_up({**queued, "Job": ""}) and not local_spawner.is_up({**queued, "Job": "restart",
                                                                                      "ActiveState": "activating"})
    assert not local_spawner.is_up({"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed"})
    assert not local_spawner.is_up({"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"})
    # a systemd older than 246 lists no jobs: a loaded unit that is inactive may be queued
    assert local_spawner.is_up({"LoadState": "loaded", "ActiveState": "inactive", "SubState": "dead"})
    ann = server_of(monkeypatch, "ann")
    del ann.poll  # (server_of's stand-in: the real one here)
    monkeypatch.setattr(local_spawner, "UNITS", local_spawner.SharedQuery(
        lambda units: asyncio.sleep(0, {unit: queued for unit in units})))
    monkeypatch.setattr(local_spawner, "PORTS", local_spawner.PORTS.__class__())
    local_spawner.PORTS.claim(ann, 41001)
    assert asyncio.run(ann.poll()) is None and local_spawner.PORTS.held[41001]() is ann


def test_the_environment_file_replaces_what_a_refused_start_left_and_is_roots_alone(tmp_path):
    """A start systemd refused leaves its 0400 file (systemd removes the directory only with a unit that ran); the
    sandboxed hub cannot write into it (no CAP_DAC_OVERRIDE: "Permission denied" at every later start of hers,
    tests/integration/test_install.py), so the file is written aside and renamed over it."""
    directory = tmp_path / "jupyterhub" / "users" / "7"
    left = local_spawner.environment_file(str(directory), UNIT, {"OLD": "x"})
    before = os.stat(left).st_ino
    path = local_spawner.environment_file(str(directory), UNIT, {"JUPYTERHUB_API_TOKEN": "t0k", "B": "it's x y"})
    assert path == left and os.stat(path).st_ino != before
    assert open(path).read() == "B='it'\"'\"'s x y'\nJUPYTERHUB_API_TOKEN=t0k\n"
    assert (os.stat(path).st_mode & 0o777, os.stat(directory).st_mode & 0o777) == (0o400, 0o700)
    assert [f.name for f in directory.iterdir()] == [f"{UNIT}.env"]
    with pytest.raises(RuntimeError, match="not an environment variable name: 1X"):
        local_spawner.environment_file(str(directory), UNIT, {"1X": "y"})
