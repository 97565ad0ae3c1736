"""Several servers per user and what the sessions page says of each: the local server units' names and runtime
directories (barehub.local_spawner), why a server ended (systemd's and Slurm's words), and each card's state and
times (barehub.sessions.describe). The page and the API run against a real hub in
tests/integration/test_browser.py (local servers) and test_slurm_cluster.py (Slurm jobs)."""
from __future__ import annotations

import asyncio
import getpass
import types

import pytest
from tornado import web
from traitlets.config import Config

from barehub.local_spawner import LocalSpawner, describe_unit_end, escape_unit_part, server_name_part
from barehub.sessions import describe
from barehub.utc_time import epoch
from barehub.slurm_spawner import SlurmSpawner, describe_job_end, parse_status, slurm_time_utc
from tests.unit.conftest import RecordingSystemctl

PROPERTIES = {"RuntimeDirectory": "jupyterhub/users/{USERID}", "TimeoutStopSec": "20s"}


class User(types.SimpleNamespace):
    pass


def local_spawner(user_name: str, server: str = "", uid: int = 7, others: tuple = ()) -> LocalSpawner:
    user = User(name=user_name, id=uid, url=f"/user/{user_name}/", spawners={})
    config = Config({"SystemdSpawner": {"unit_name_template": "jupyter-{USERNAME}-singleuser",
                                        "unit_extra_properties": dict(PROPERTIES)}})
    spawner = LocalSpawner(user=user, orm_spawner=types.SimpleNamespace(name=server, server=None), config=config,
                           _deprecated_db_session=None)
    user.spawners[server] = spawner
    for other in others:
        user.spawners[other.name] = other
    return spawner


def test_each_server_of_a_user_has_its_own_unit_and_runtime_directory():
    default, gpu = local_spawner("alice"), local_spawner("alice", "gpu-1")
    assert default.unit_name == "jupyter-alice-singleuser"  # as before named servers: running units are found
    assert gpu.unit_name == "jupyter-alice-gpu-1"
    assert default.server_properties()["RuntimeDirectory"] == "jupyterhub/users/{USERID}"
    assert gpu.server_properties()["RuntimeDirectory"] == "jupyterhub/users/{USERID}-gpu-1"
    assert gpu.server_properties()["TimeoutStopSec"] == "20s"
    # every runtime directory is the server's own (the apps' sockets of two servers never meet)
    gpu.configured_properties = {**PROPERTIES, "RuntimeDirectory": "jupyterhub/users/{USERID} jupyterhub-apps/{USERID}"}
    assert gpu.server_properties()["RuntimeDirectory"] == \
        "jupyterhub/users/{USERID}-gpu-1 jupyterhub-apps/{USERID}-gpu-1"


def test_two_users_units_never_share_a_name_whatever_their_names():
    """Upstream's plain template gave user "ann-gpu"'s default server and user "ann"'s server "gpu-singleuser" one
    unit, and starting one stopped the other."""
    names = {}
    for user, server in [("ann-gpu", ""), ("ann", "gpu-singleuser"), ("ann", "gpu"), ("ann-gpu", "x"),
                         ("ann", "gpu-x"), ("a.b", ""), ("a\\x2db", ""), ("a-b", ""), ("a/b", "")]:
        unit = local_spawner(user, server).unit_name
        assert unit not in names, f"{user}/{server} and {names[unit]} share {unit}"
        names[unit] = f"{user}/{server}"
    assert local_spawner("ann-gpu").unit_name == "jupyter-ann\\x2dgpu-singleuser"
    assert escape_unit_part(".hidden user/é") == "\\x2ehidden\\x20user\\x2f\\xc3\\xa9"
    assert server_name_part("gpu-1") == "gpu-1"
    assert server_name_part("gpu\nrun") != server_name_part("gpu-run") and "--" in server_name_part("a b")


def test_a_server_whose_unit_would_be_another_of_hers_is_refused_before_anything_stops():
    default = local_spawner("alice")
    clash = local_spawner("alice", "singleuser", others=(default,))
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(clash.start())
    assert refused.value.status_code == 409 and "jupyter-alice-singleuser" in refused.value.log_message


@pytest.mark.parametrize("properties, reason", [
    ({"LoadState": "not-found"}, "the server exited"),
    ({"LoadState": "loaded", "Result": "success"}, "the server exited"),
    ({"LoadState": "loaded", "Result": "oom-kill"}, "out of memory: a process reached the server's memory limit"),
    ({"LoadState": "loaded", "Result": "exit-code", "ExecMainStatus": "3"}, "the server exited with an error (status 3)"),
    ({"LoadState": "loaded", "Result": "signal", "ExecMainStatus": "9"}, "the server was killed by a signal (signal 9)"),
])
def test_why_a_local_server_ended_is_said_from_systemds_result(properties, reason):
    assert describe_unit_end(properties).startswith(reason)


def test_why_a_job_ended_is_said_from_slurms_final_state():
    assert describe_job_end(parse_status("TIMEOUT cn1|TimeLimit|2026-12-06T08:00:00|2026-12-06T08:01:00|1:00")) \
        == "time limit reached"
    assert describe_job_end(parse_status("CANCELLED cn1|None|2026-12-06T08:00:00|2026-12-06T09:00:00|1:00:00")) \
        == "cancelled"
    assert describe_job_end(parse_status("slurm_load_jobs error: Invalid job id specified")) \
        == "ended (Slurm no longer lists the job)"


def test_an_earlier_releases_saved_squeue_line_still_reads():
    status = parse_status("RUNNING cn1|None|2026-12-06T08:00:00")
    assert (status["host"], status["start"], status["end"], status["limit"]) == ("cn1", "2026-12-06T08:00:00", "", "")
    assert parse_status("PENDING (null)|Resources|N/A|N/A|UNLIMITED")["limit"] == ""


def test_slurms_local_times_are_given_in_utc(monkeypatch):
    monkeypatch.setenv("TZ", "Europe/Paris")
    import time
    time.tzset()
    try:
        assert slurm_time_utc("2026-12-06T09:15:00") == "2026-12-06T08:15:00Z"
        assert slurm_time_utc("") == slurm_time_utc("garbage") == ""
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


NOW = epoch("2026-12-06T08:30:00Z")


def model(**fields) -> dict:
    return {"name": "gpu", "pending": None, "ready": False, "started": "2026-12-06T08:00:00.000000Z",
            "user_options": {"profile": "1 GPU"}, **fields}


def test_a_queued_job_is_shown_with_slurms_reason_and_expected_start():
    details = {"kind": "slurm", "job_id": "42", "job_state": "PENDING", "reason": "Resources",
               "waiting": "Waiting in Slurm's queue (PENDING, Resources): ...", "expected_start": "2026-12-06T09:00:00Z",
               "warn_before_s": 600}
    card = describe(model(pending="spawn"), details, None, NOW)
    assert (card["state"], card["why"], card["expected_start"], card["job_id"], card["profile"]) == \
        ("queued", details["waiting"], "2026-12-06T09:00:00Z", "42", "1 GPU")
    assert card["time_used_s"] is None and card["time_left_s"] is None
    assert describe(model(pending="spawn"), {**details, "job_state": "RUNNING"}, None, NOW)["state"] == "starting"


def test_a_running_job_has_its_time_used_and_left_from_slurms_start_and_end():
    details = {"kind": "slurm", "job_id": "42", "job_state": "RUNNING", "node": "cn2", "warn_before_s": 600,
               "job_started": "2026-12-06T08:10:00Z", "ends_at": "2026-12-06T08:40:00Z", "log": "/home/leo/x.log"}
    card = describe(model(ready=True), details, None, NOW)
    assert (card["state"], card["node"], card["time_used_s"], card["time_left_s"], card["warn_before_s"]) == \
        ("running", "cn2", 20 * 60, 10 * 60, 600)
    assert card["ends_at"] == "2026-12-06T08:40:00Z" and card["log"] == "/home/leo/x.log"


def test_an_ended_server_says_why_and_keeps_its_jobs_log_a_local_one_has_no_slurm_fields():
    ended = {"at": NOW - 60, "reason": "time limit reached", "job_id": "42", "log": "/home/leo/x.log"}
    card = describe(model(started=None), {"kind": "slurm", "job_id": "", "warn_before_s": 600}, ended, NOW)
    assert (card["state"], card["why"], card["job_id"], card["log"], card["ended_at"]) == \
        ("ended", "time limit reached", "42", "/home/leo/x.log", "2026-12-06T08:29:00Z")
    local = describe(model(ready=True), {"kind": "local", "unit": "jupyter-leo-gpu"}, None, NOW)
    assert (local["state"], local["time_used_s"], local["time_left_s"], local["node"], local["job_id"]) == \
        ("running", 30 * 60, None, "", "")
    assert describe(model(), {}, None, NOW)["state"] == "stopped"
    assert describe(model(pending="stop", ready=True), {}, None, NOW)["state"] == "stopping"


def test_a_running_servers_card_says_what_it_is_busy_with_and_until_when_it_is_kept_a_stopped_one_neither():
    work = {"busy": "kernel", "busy_since": NOW - 90, "reported_at": NOW - 5}
    card = describe(model(ready=True), {"kind": "local"}, None, NOW, work, NOW + 3600)
    assert (card["busy"], card["busy_since"], card["keep_until"]) == \
        ("kernel", "2026-12-06T08:28:30Z", "2026-12-06T09:30:00Z")
    assert describe(model(ready=True), {}, None, NOW, None, NOW - 1)["keep_until"] == ""  # passed: not shown
    stopped = describe(model(), {}, None, NOW, work, NOW + 3600)
    assert (stopped["busy"], stopped["busy_since"], stopped["keep_until"]) == ("", "", "")


def slurm_spawner(name: str = "", user_name: str = "leo") -> SlurmSpawner:
    user = types.SimpleNamespace(name=user_name, escaped_name=user_name, url=f"/user/{user_name}/")
    spawner = SlurmSpawner(user=user, orm_spawner=types.SimpleNamespace(name=name, server=None), hub=types.SimpleNamespace(public_host="", base_url="/hub/",
                                                                          api_url="http://127.0.0.1:8081/hub/api/"))
    spawner.batch_script = "#!/bin/bash\n#SBATCH --output={{homedir}}/.jupyterhub_slurm_%j.log\n{{cmd}}\n"  # slurm.py's
    spawner.req_homedir = f"/home/{user_name}"
    return spawner


def test_the_reason_a_job_ended_outlives_the_hub_clearing_its_state_and_a_restart():
    spawner = slurm_spawner("gpu")
    spawner.job_id, spawner.job_status = "42", "TIMEOUT cn2|TimeLimit|2026-12-06T08:00:00|2026-12-06T08:01:00|1:00"

    async def ended():
        from batchspawner.batchspawner import JobStatus
        spawner.query_job_status = lambda *_: asyncio.sleep(0, result=JobStatus.NOTFOUND)  # squeue's answer, as saved
        return await spawner.poll()

    assert asyncio.run(ended()) == 1
    spawner.clear_state()  # JupyterHub, once the server stopped
    state = spawner.get_state()
    assert state["ended"]["reason"] == "time limit reached" and state["ended"]["log"] == "/home/leo/.jupyterhub_slurm_42.log"
    again = slurm_spawner("gpu")
    again.load_state(state)  # a hub restart
    assert again.ended["reason"] == "time limit reached" and again.job_id == ""


def test_the_batch_script_gets_the_servers_name_for_the_jobs_name():
    me = getpass.getuser()  # batchspawner reads the user's home and shell
    assert slurm_spawner("gpu", me).get_req_subvars()["servername"] == "gpu"
    assert slurm_spawner("", me).get_req_subvars()["servername"] == ""


def test_a_running_unit_of_that_name_that_is_not_hers_is_refused_not_stopped(monkeypatch):
    """A server of user "ann-gpu" started by an earlier release runs as the unescaped jupyter-ann-gpu-singleuser;
    user "ann" names a server "gpu-singleuser": upstream would stop ann-gpu's unit, as root, and take its name."""
    import pwd as pwd_module

    from barehub import local_spawner as module
    accounts = {"ann": 1002, "ann-gpu": 1001}
    monkeypatch.setattr(module.pwd, "getpwnam", lambda name: types.SimpleNamespace(
        pw_name=name, pw_uid=accounts[name]) if name in accounts else pwd_module.getpwnam(name))
    systemd = RecordingSystemctl({"jupyter-ann-gpu-singleuser": {  # ann-gpu's
        "ActiveState": "active", "Slice": "jupyterhub-users.slice", "User": "1001"}})
    monkeypatch.setattr(module, "Systemctl", lambda timeout: systemd)
    spawner = local_spawner("ann", "gpu-singleuser")
    with pytest.raises(web.HTTPError) as refused:
        asyncio.run(spawner.start())
    assert refused.value.status_code == 409 and systemd.shown == ["jupyter-ann-gpu-singleuser"]
    assert [call[0] for call in systemd.calls] == ["list-units"]  # nothing stopped, nothing started
    assert spawner.unit_is_hers({"Slice": "jupyterhub-users.slice", "User": "1002"})  # a left-over of her own
    assert not spawner.unit_is_hers({"Slice": "system.slice", "User": "1002"})  # a unit of the host's


def test_a_server_name_an_older_hub_let_in_never_reaches_the_batch_script():
    me = getpass.getuser()
    assert slurm_spawner("bad\n#SBATCH --account=other", me).get_req_subvars()["servername"] == "named"


def test_every_active_server_is_found_past_the_hubs_page_limit(hub_api_server, prefix):
    """The hub answers at most 200 users per request: uninstall must see the 201st user's server too."""
    import http.server
    import json as json_module
    from urllib.parse import parse_qs, urlparse

    from barehub.hub_api import HubAPI
    users = [{"name": f"u{i}", "servers": {"": {}, "gpu": {}} if i == 250 else {"": {}}} for i in range(300)]

    class Hub(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            query = parse_qs(urlparse(self.path).query)
            offset, limit = int(query["offset"][0]), min(int(query["limit"][0]), 200)
            body = json_module.dumps(users[offset:offset + limit]).encode()
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = hub_api_server(Hub)
    found = HubAPI(prefix, server.server_port).active_servers()
    assert len(found) == 301 and ("u250", "gpu") in found and ("u299", "") in found


def test_a_local_server_that_did_not_start_says_so_not_stopped(monkeypatch):
    from barehub import local_spawner as module

    monkeypatch.setattr(module.SystemdSpawner, "get_env", lambda self: {})  # (JupyterHub's needs a whole hub)
    systemd = RecordingSystemctl()
    monkeypatch.setattr(module, "Systemctl", lambda timeout: systemd)
    spawner = local_spawner("bob", "gpu")
    spawner.username_template = "barehub-no-such-account"
    with pytest.raises(RuntimeError):
        asyncio.run(spawner.start())
    spawner.record_end("stopped")  # what the stop() JupyterHub calls next records
    assert spawner.get_state()["ended"]["reason"] == \
        "did not start: no account named barehub-no-such-account on this machine for bob's server"
    assert [call[0] for call in systemd.calls] == ["list-units"]  # nothing handed to systemd


def test_the_server_names_used_as_they_are_are_jupyterhubs_safe_slugs():
    from jupyterhub.slugs import is_valid_safe_slug

    from barehub.server_names import is_safe
    names = ["gpu", "gpu-1", "a", "a-", "-a", "a--b", "1a", "A", "gpu run", "x" * 30, "x" * 31, "a_b", "a.b", "",
             "gpu\n", "é"]
    assert [is_safe(n) for n in names] == [is_valid_safe_slug(n) for n in names]
