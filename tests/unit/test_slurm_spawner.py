"""What barehub's SlurmSpawner tells a user from squeue's answers, and what it keeps in the hub's database (the
real Slurm runs in tests/integration/test_slurm_cluster.py and test_slurm_ldap.py)."""
from barehub.slurm_spawner import describe_end, describe_wait, parse_status


def test_a_waiting_jobs_reason_and_expected_start_are_said_as_a_user_would_read_them():
    status = parse_status("PENDING n/a|Resources|2026-11-30T08:15:00\n")
    assert status == {"state": "PENDING", "host": "n/a", "reason": "Resources", "start": "2026-11-30T08:15:00"}
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
    from barehub.slurm_spawner import SlurmSpawner

    spawner = SlurmSpawner()
    spawner.job_id, spawner.port = "42", 40123
    restarted = SlurmSpawner()
    restarted.load_state(spawner.get_state())
    assert (restarted.job_id, restarted.port) == ("42", 40123)
    restarted.load_state({})  # no job: no port either
    assert (restarted.job_id, restarted.port) == ("", 0)
