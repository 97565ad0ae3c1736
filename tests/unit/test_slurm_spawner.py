"""What barehub's SlurmSpawner tells a user from squeue's answers, what it keeps in the hub's database, and which
port reports it takes (the real Slurm runs in tests/integration/test_slurm_cluster.py and test_slurm_ldap.py)."""
import asyncio
import getpass
import json
import socket
import types

import pytest
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from barehub.slurm_spawner import (PortReportHandler, SlurmSpawner, check_reported_port, describe_end, describe_wait,
                                   parse_status)


def test_a_waiting_jobs_reason_and_expected_start_are_said_as_a_user_would_read_them():
    status = parse_status("PENDING n/a|Resources|2026-11-30T08:15:00|2026-11-30T16:15:00|8:00:00\n")
    assert status == {"state": "PENDING", "host": "n/a", "reason": "Resources", "start": "2026-11-30T08:15:00",
                      "end": "2026-11-30T16:15:00", "limit": "8:00:00"}
    text = describe_wait(status)
    assert "(PENDING, Resources)" in text and "in use" in text and "start at 2026-11-30 08:15:00" in text


def test_a_reason_slurm_gives_with_details_or_unknown_to_us_is_shown_as_slurm_gave_it():
    text = describe_wait(parse_status("PENDING n/a|ReqNodeNotAvail, UnavailableNodes:gpu1|N/A"))
    assert "not available" in text and "UnavailableNodes:gpu1" in text and "expects" not in text
    assert "SomeNewReason" in describe_wait(parse_status("PENDING n/a|SomeNewReason|N/A"))


def test_a_running_jobs_node_is_read():
    assert parse_status("RUNNING node-2|None|2026-11-30T08:00:00")["host"] == "node-2"


def test_a_job_that_ended_is_told_with_its_state_reason_and_log():
    text = describe_end("42", parse_status("FAILED node-2|NonZeroExitCode|2026-11-30T08:00:00"),
                        "/home/carol/.jupyterhub_slurm_42.log")
    assert text == ("Slurm job 42 ended before the server started (FAILED, reason: NonZeroExitCode). "
                    "Its output is in /home/carol/.jupyterhub_slurm_42.log.")


def test_an_error_instead_of_a_status_line_is_no_state():
    status = parse_status("slurm_load_jobs error: Invalid job id specified")
    assert status["state"] == "" and "gone from the queue" in describe_end("42", status, "x")


def test_reasons_only_an_administrator_changes_are_the_ones_a_spawn_stops_waiting_for():
    from barehub.slurm_spawner import WILL_NOT_START

    assert "PartitionDown" in WILL_NOT_START
    assert not {"Priority", "Resources", "ReqNodeNotAvail", "Dependency", "BeginTime"} & WILL_NOT_START


def test_the_job_and_the_port_it_reported_are_kept_for_a_hub_that_restarts_before_the_server_answers():
    spawner = SlurmSpawner()
    spawner.job_id, spawner.port = "42", 40123
    restarted = SlurmSpawner()
    restarted.load_state(spawner.get_state())
    assert (restarted.job_id, restarted.port) == ("42", 40123)
    restarted.load_state({})  # no job: no port either
    assert (restarted.job_id, restarted.port) == ("", 0)


# --- the port report: only a port of the site's range
SITE = range(40000, 41000)


def test_a_reported_port_of_the_sites_range_is_taken():
    assert check_reported_port({"port": 40000}, SITE) == 40000
    assert check_reported_port({"port": 40999}, SITE) == 40999


@pytest.mark.parametrize("port", [39999, 41000, 22, 8081, 0, -1, 65536, True, False, 40000.0, "40000", None, [40000]])
def test_a_port_outside_the_range_or_not_an_integer_is_refused_naming_the_range(port):
    """JSON's true is Python's True, an int equal to 1 (and False to 0): not a port."""
    with pytest.raises(web.HTTPError) as e:
        check_reported_port({"port": port}, SITE)
    assert e.value.status_code == 400 and "port range 40000-40999" in e.value.log_message


@pytest.mark.parametrize("data", [{"port": 40000, "exec_prefix": ""}, {}, [40000], 40000, None, {"Port": 40000}])
def test_anything_but_a_port_is_refused(data):
    with pytest.raises(web.HTTPError) as e:
        check_reported_port(data, SITE)
    assert e.value.status_code == 400 and e.value.log_message == 'only {"port": N} is accepted'


def test_with_no_range_set_the_hub_takes_only_unprivileged_ports():
    spawner = SlurmSpawner()
    assert spawner.ports == range(1024, 65536)
    assert check_reported_port({"port": 1024}, spawner.ports) == 1024
    for port in (1023, 80, 65536):
        with pytest.raises(web.HTTPError):
            check_reported_port({"port": port}, spawner.ports)


class Reporting:
    """What PortReportHandler.post uses of itself, with the reporting server's spawner (its token checked)."""
    def __init__(self, spawner, body):
        self.spawner, self.body, self.saved, self.status, self.answer = spawner, body, 0, None, None
        spawner.save_state = lambda: setattr(self, "saved", self.saved + 1)

    def reporting_spawner(self):
        return self.spawner

    def get_json_body(self):
        return self.body

    def set_status(self, status):
        self.status = status

    def finish(self, text):
        self.answer = json.loads(text)


def report(spawner, body) -> Reporting:
    handler = Reporting(spawner, body)
    PortReportHandler.post.__wrapped__(handler)  # under @web.authenticated
    return handler


def test_the_handler_records_a_port_of_the_spawners_range_and_refuses_any_other():
    spawner = SlurmSpawner(config=Config({"SlurmSpawner": {"port_range": "40000-40999"}}))
    done = report(spawner, {"port": 40123})
    assert (spawner.port, done.saved, done.status) == (40123, 1, 201)
    for body in ({"port": 41000}, {"port": True}):
        with pytest.raises(web.HTTPError) as e:
            report(spawner, body)
        assert e.value.status_code == 400 and "40000-40999" in e.value.log_message
    assert spawner.port == 40123  # unchanged
    assert report(spawner, {"port": 40123}).status == 201  # the same report again (a retry after a lost answer)
    with pytest.raises(web.HTTPError) as e:  # the job's code cannot move its route once it is known
        report(spawner, {"port": 40124})
    assert e.value.status_code == 409 and spawner.port == 40123


def test_the_port_range_is_checked_where_it_is_set():
    assert SlurmSpawner(config=Config({"SlurmSpawner": {"port_range": "40000-40999"}})).ports == SITE
    for wrong in ("40999-40000", "40000-70000", "40000:40999", "all"):
        with pytest.raises(TraitError, match="port_range .* is not a port range like 40000-40999"):
            SlurmSpawner(config=Config({"SlurmSpawner": {"port_range": wrong}}))


def test_barehub_check_names_a_wrong_port_range(prefix):
    from barehub.validation import validate

    (prefix.config_d / "40-site.py").write_text('c.JupyterHub.spawner_class = "barehub.slurm_spawner.SlurmSpawner"\n'
                                                'c.SlurmSpawner.port_range = "40999-40000"\n')
    _, problems = validate(prefix)
    assert [str(p).split(": ", 1)[1] for p in problems if "port_range" in str(p)] == \
        ["c.SlurmSpawner.port_range: port_range '40999-40000' is not a port range like 40000-40999 (ports 1 to "
         "65535, the lower first)"]


def a_spawner(config: dict) -> SlurmSpawner:
    """A spawner whose get_env() runs: a user (this process's own unix account: batchspawner reads its home and
    shell) and a hub."""
    name = getpass.getuser()
    user = types.SimpleNamespace(name=name, escaped_name=name, url=f"/user/{name}/")
    hub = types.SimpleNamespace(public_host="", api_url="http://127.0.0.1:8081/hub/api/", base_url="/hub/")
    return SlurmSpawner(user=user, hub=hub, config=Config({"SlurmSpawner": config}))


def test_the_job_gets_the_range_the_hub_takes_reports_from():
    spawner = a_spawner({"port_range": "40000-40999", "environment": {"BAREHUB_PORT_RANGE": "1-65535"}})
    env = spawner.get_env()
    assert env["BAREHUB_PORT_RANGE"] == "40000-40999"  # port_range owns it: environment cannot widen the job's
    assert "BAREHUB_PORT_RANGE" in spawner.req_keepvars.split(",")  # sbatch --export={{keepvars}} passes it on
    assert "BAREHUB_PORT_RANGE" not in a_spawner({}).get_env()


def test_a_fragment_of_before_port_range_keeps_its_range_at_both_ends():
    """An installed fragment that gives the range only in the jobs' environment (slurm.py before port_range)."""
    spawner = a_spawner({"environment": {"BAREHUB_PORT_RANGE": "40000-40999"}})
    assert spawner.ports == SITE and spawner.get_env()["BAREHUB_PORT_RANGE"] == "40000-40999"


def test_the_server_is_up_once_it_answers_http_not_once_its_port_takes_connections():
    """The job listens on its port from before it reports it, until the server serves there."""
    async def check() -> tuple[bool, bool]:
        async def answer(reader, writer):
            await reader.readline()
            writer.write(b"HTTP/1.1 302 Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            writer.close()

        held = socket.create_server(("127.0.0.1", 0))  # listening, nothing accepts yet: the job before its server
        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        with held:
            async with server:
                spawner = SlurmSpawner()
                spawner.ip, spawner.port = "127.0.0.1", held.getsockname()[1]
                before = await spawner.server_listens()
                spawner.port = server.sockets[0].getsockname()[1]
                return before, await spawner.server_listens()

    assert asyncio.run(check()) == (False, True)
