"""LocalSpawner's start with the unit her last server left behind, which systemd-run cannot reuse while systemd
holds it loaded (systemd through RecordingSystemctl; the real one: tests/integration/test_install.py)."""
from __future__ import annotations

import asyncio
import ipaddress
import os
import pwd
import socket
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
    it does until it knows the unit's cgroup is empty; `holds=None`: for ever (another unit refers to it)."""

    def __init__(self, state: dict[str, str], holds: int | None):
        super().__init__()
        self.state, self.holds, self.asked_after_reset = state, holds, 0

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
    """Upstream's start (systemd-run, then polls) replaced by a record of when it ran, after which calls."""
    runs = []

    async def upstream_start(spawner):
        runs.append(list(spawner.systemd.calls))
        return ("127.0.0.1", 8888)
    monkeypatch.setattr(local_spawner.SystemdSpawner, "start", upstream_start)
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


def test_no_unit_left_costs_only_the_one_question_start_asked_already(monkeypatch, started):
    systemd = Lingering({"LoadState": "not-found", "ActiveState": "inactive"}, holds=0)
    asyncio.run(spawner_with(monkeypatch, systemd).start())
    assert started == [[]] and systemd.shown == [UNIT]


@pytest.fixture
def systemd_run(monkeypatch):
    """Upstream's own start, with systemd (its systemctl and systemd-run) replaced by a record of each server's
    unit and the URL its environment tells it to serve at; every unit is running once started."""
    from jupyterhub.spawner import Spawner
    from systemdspawner import systemd

    runs: dict[str, str] = {}

    async def nothing(*args, **kwargs):
        return False

    async def start_transient_service(unit, cmd, args, working_dir, environment_variables=None, **kwargs):
        runs[unit] = environment_variables["JUPYTERHUB_SERVICE_URL"]

    monkeypatch.setattr(systemd, "service_running", nothing)
    monkeypatch.setattr(systemd, "service_failed", nothing)
    monkeypatch.setattr(systemd, "stop_service", nothing)
    monkeypatch.setattr(systemd, "start_transient_service", start_transient_service)
    # JupyterHub's get_env needs a whole hub; what matters here is the port it puts in the server's URL
    monkeypatch.setattr(Spawner, "get_env", lambda self: {"JUPYTERHUB_SERVICE_URL": f"http://127.0.0.1:{self.port}/"})
    monkeypatch.setattr(local_spawner, "PORTS", local_spawner.PORTS.__class__())
    return runs


def drawn(monkeypatch, *ports: int):
    """The numbers the kernel hands out for port 0, in turn: to upstream's random_port() and to barehub's redraws."""
    numbers = iter(ports)
    import systemdspawner.systemdspawner as upstream
    monkeypatch.setattr(upstream, "random_port", lambda: next(numbers))
    local_spawner.PORTS.draw = lambda: next(numbers)


def server_of(monkeypatch, name: str) -> local_spawner.LocalSpawner:
    systemd = RecordingSystemctl(show=lambda unit, *props: {"LoadState": "not-found"})
    spawner = spawner_with(monkeypatch, systemd)
    spawner.user = types.SimpleNamespace(name=name, id=hash(name) % 1000, url=f"/user/{name}/", spawners={})
    spawner.unit_name = spawner.unit_name_for("")
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
    otherwise read /proc/net/tcp 400-2000 times a second)."""
    drawn(monkeypatch, 41001, 41002, 41003)
    looks = listened(monkeypatch, set(), {(LOOPBACK, HERS)})
    servers = [server_of(monkeypatch, name) for name in ("ann", "bob", "cy")]

    async def together():
        return await asyncio.gather(*(server.start() for server in servers))

    assert [port for _, port in asyncio.run(together())] == [41001, 41002, 41003]
    assert looks == [[41001, 41002, 41003]] * 2


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
