"""Slurm servers' usage from sacct (barehub.usage_slurm) on sacct's real output: the lines below were captured on
the test cluster (tests/integration/slurm_cluster.py: Slurm 22.05.8, slurmdbd + MariaDB, jobacct_gather/linux
every 2 s) with barehub's own sacct command line, from jobs submitted there as kim and leo:
1 a GPU job named as a server (gres/gpu=1, 300 MB held, a comment: the profile), 2 a named server's job with two
srun steps (peaks 10 MB, 110 MB, 2 MB), 3 a job that is not barehub's, 4 a server job still running, 5 a job whose
memory went from 400 MB (6 s) to 10 MB (8 s). The error texts are sacct's own, on this machine (below) and
on the cluster with slurmdbd stopped.
"""
from __future__ import annotations

import shutil
import subprocess
from datetime import datetime, timezone

import pytest

from barehub import usage, usage_slurm
from barehub.base.errors import BarehubError

CAPTURED_AT = 1796571808  # `date -u +%s` on the login node, just before the call
SACCT = """\
1|jupyterhub-leo|leo|leo|2026-12-06T15:42:28|2026-12-06T15:42:37|9|00:08.261|billing=2,cpu=2,gres/gpu=1,mem=1G,node=1|||COMPLETED|1 GPU: 8 CPUs, 32 GB, 4 hours
1.batch|batch|||2026-12-06T15:42:28|2026-12-06T15:42:37|9|00:08.261|cpu=2,gres/gpu=1,mem=1G,node=1|316724K|316724K|COMPLETED|
2|jupyterhub-kim-cpu|kim|kim|2026-12-06T15:42:28|2026-12-06T15:42:37|9|00:00.122|billing=2,cpu=2,mem=1G,node=1|||COMPLETED|
2.batch|batch|||2026-12-06T15:42:28|2026-12-06T15:42:37|9|00:00.029|cpu=2,mem=1G,node=1|10800K|10800K|COMPLETED|
2.0|python3|||2026-12-06T15:42:29|2026-12-06T15:42:35|6|00:00.089|cpu=2,mem=1G,node=1|110504K|110504K|COMPLETED|
2.1|sleep|||2026-12-06T15:42:35|2026-12-06T15:42:37|2|00:00.003|cpu=2,mem=1G,node=1|1668K|1668K|COMPLETED|
3|other-job|kim|kim|2026-12-06T15:42:28|2026-12-06T15:42:32|4|00:00.004|billing=1,cpu=1,mem=100M,node=1|||COMPLETED|
3.batch|batch|||2026-12-06T15:42:28|2026-12-06T15:42:32|4|00:00.004|cpu=1,mem=100M,node=1|3224K|3224K|COMPLETED|
4|jupyterhub-kim|kim|kim|2026-12-06T15:42:28|Unknown|60|00:00:00|billing=1,cpu=1,mem=100M,node=1|||RUNNING|
4.batch|batch|||2026-12-06T15:42:28|Unknown|60|00:00:00|cpu=1,mem=100M,node=1|||RUNNING|
5|memshape|leo|leo|2026-12-06T15:42:58|2026-12-06T15:43:13|15|00:00.399|billing=1,cpu=1,mem=1G,node=1|||COMPLETED|
5.batch|batch|||2026-12-06T15:42:58|2026-12-06T15:43:13|15|00:00.399|cpu=1,mem=1G,node=1|419228K|419228K|COMPLETED|
"""
# job 4 again, after `scancel 4`
CANCELLED = """\
4|jupyterhub-kim|kim|kim|2026-12-06T15:42:28|2026-12-06T15:43:32|64|00:00.002|billing=1,cpu=1,mem=100M,node=1|||CANCELLED by 0|
4.batch|batch|||2026-12-06T15:42:28|2026-12-06T15:43:32|64|00:00.002|cpu=1,mem=100M,node=1|3136K|3136K|CANCELLED|
"""
SLURMDBD_DOWN = """\
sacct: error: slurm_persist_conn_open_without_init: failed to open persistent connection to host:login:6819: Connection refused
sacct: error: Sending PersistInit msg: Connection refused
sacct: error: Problem talking to the database: Connection refused
"""
DISABLED = "Slurm accounting storage is disabled\n"
T = lambda text: datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()  # noqa: E731
DECEMBER = usage.Window(T("2026-12-01T00:00:00"), T("2026-12-06T16:00:00"))


def answering(stdout: str = "", stderr: str = "", returncode: int = 0, calls: list | None = None):
    def run(argv, env, timeout):
        if calls is not None:
            calls.append((argv, env, timeout))
        return subprocess.CompletedProcess(argv, returncode, stdout, stderr)
    return run


def by_id(sessions):
    return {s.id: s for s in sessions}


def test_the_servers_jobs_of_real_sacct_output_become_sessions_and_other_jobs_do_not():
    found = by_id(usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT)))
    assert sorted(found) == ["1", "2", "4"]  # 3 (other-job) and 5 (memshape) are not named jupyterhub-...
    gpu = found["1"]
    assert (gpu.source, gpu.user, gpu.group, gpu.server, gpu.profile) == \
        ("slurm", "leo", "leo", "", "1 GPU: 8 CPUs, 32 GB, 4 hours")
    assert (gpu.start, gpu.end, gpu.wall_s(CAPTURED_AT)) == (T("2026-12-06T15:42:28"), T("2026-12-06T15:42:37"), 9)
    assert gpu.gpus == 1 and gpu.cpu_s == pytest.approx(8.261)
    assert gpu.mem_peak_bytes == 316724 * 1024 and gpu.mem_avg_bytes is None and gpu.note == ""


def test_a_job_with_steps_counts_its_total_cpu_once_and_its_largest_steps_peak():
    job = by_id(usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT)))["2"]
    assert (job.user, job.server, job.gpus, job.profile) == ("kim", "cpu", 0, "")
    assert job.cpu_s == pytest.approx(0.122)  # the job's TotalCPU (its steps': 0.029 + 0.089 + 0.003 + ...)
    assert job.mem_peak_bytes == 110504 * 1024  # step 0's, the largest


def test_a_running_job_has_no_end_and_says_its_cpu_and_memory_come_when_it_ends():
    job = by_id(usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT)))["4"]
    assert job.end is None and job.wall_s(CAPTURED_AT) == CAPTURED_AT - T("2026-12-06T15:42:28")
    assert job.cpu_s == 0 and job.mem_peak_bytes is None and "running" in job.note
    [ended] = usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(CANCELLED))
    assert (ended.end, ended.mem_peak_bytes, ended.note) == (T("2026-12-06T15:43:32"), 3136 * 1024, "")


def test_gpu_hours_are_the_gpus_times_the_wall_time_in_the_report():
    report = usage.summarize(usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT)), DECEMBER, "user",
                             CAPTURED_AT)
    rows = {row.key: row for row in report.rows}
    assert rows["leo"].gpu_hours == pytest.approx(9 / 3600) and rows["kim"].gpu_hours == 0
    assert rows["leo"].mem_peak_gib == pytest.approx(316724 / 1024 ** 2)


def test_no_average_memory_from_slurm_whose_averss_is_the_peak_not_a_time_average():
    """Job 5 held 400 MB for 6 s and 10 MB for the last 8 s: sacct's AveRSS is its MaxRSS (419228K)."""
    [job] = usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT), prefix="memshape")
    assert job.mem_peak_bytes == 419228 * 1024 and job.mem_avg_bytes is None


def test_one_sacct_call_over_the_window_in_utc_with_every_users_jobs_and_their_steps():
    calls = []
    usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT, calls=calls), sacct="/usr/bin/sacct")
    [(argv, env, timeout)] = calls
    assert argv == ["/usr/bin/sacct", "--allusers", "--parsable2", "--noheader", "--starttime", "2026-12-01T00:00:00",
                    "--endtime", "2026-12-06T16:00:00", "--format=JobIDRaw,JobName,User,Group,Start,End,ElapsedRaw,"
                    "TotalCPU,AllocTRES,MaxRSS,AveRSS,State,Comment"]
    assert "--allocations" not in argv and "-X" not in argv  # the steps carry the memory
    assert env["TZ"] == "UTC" and env["SLURM_TIME_FORMAT"] == "standard" and 0 < timeout <= 120


def test_a_comment_with_the_separator_or_a_line_break_stays_the_jobs_own():
    text = SACCT.replace("|1 GPU: 8 CPUs, 32 GB, 4 hours", "|mine|a\nb|c")
    gpu = by_id(usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(text)))["1"]
    assert gpu.profile == "mine|a" and gpu.gpus == 1


@pytest.mark.parametrize("text, seconds", [("00:08.261", 8.261), ("00:00:00", 0), ("01:02:03", 3723),
                                           ("1-02:03:04", 93784), ("12:34", 754), ("", 0)])
def test_totalcpu_in_slurms_formats(text, seconds):
    assert usage_slurm.cpu_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, size", [("316724K", 316724 * 1024), ("1.50G", 1.5 * 1024 ** 3), ("2M", 2 * 1024 ** 2),
                                        ("1T", 1024 ** 4), ("0", 0), ("", None)])
def test_memory_suffixes(text, size):
    assert usage_slurm.memory(text) == size


def test_gpus_of_alloctres():
    assert usage_slurm.gpus("billing=2,cpu=2,gres/gpu=1,mem=1G,node=1") == 1
    assert usage_slurm.gpus("cpu=8,gres/gpu:a100=2,gres/gpu=2,mem=32G") == 2
    assert usage_slurm.gpus("billing=1,cpu=1,mem=100M,node=1") == 0 and usage_slurm.gpus("") == 0


def test_slurmdbd_down_is_an_error_quoting_sacct_never_an_empty_list():
    with pytest.raises(BarehubError) as caught:
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(stderr=SLURMDBD_DOWN, returncode=1))
    assert "Slurm's accounting (slurmdbd) is unreachable or off" in caught.value.message
    assert "Problem talking to the database: Connection refused" in caught.value.message
    assert "systemctl status slurmdbd" in caught.value.hint and "--source local" in caught.value.hint


def test_accounting_disabled_is_an_error_saying_so():
    with pytest.raises(BarehubError) as caught:
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(stderr=DISABLED, returncode=1))
    assert "accounting is off" in caught.value.message and "AccountingStorageType" in caught.value.hint


def test_sacct_missing_and_sacct_hanging_are_errors():
    with pytest.raises(BarehubError, match="sacct is not installed here"):
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, sacct="/nonexistent/sacct")

    def hangs(argv, env, timeout):
        raise subprocess.TimeoutExpired(argv, timeout)
    with pytest.raises(BarehubError, match=r"did not answer within 60 s"):
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=hangs)


SACCT_BINARY = shutil.which("sacct")


@pytest.mark.skipif(not SACCT_BINARY, reason="needs Slurm's sacct (Debian: slurm-client)")
@pytest.mark.parametrize("accounting, message", [
    ("AccountingStorageType=accounting_storage/none", "Slurm's accounting is off on this cluster"),
    ("AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\nAccountingStoragePort=1",
     "Connection refused")])
def test_the_real_sacct_without_accounting_or_slurmdbd_is_a_clear_error(tmp_path, monkeypatch, accounting, message):
    """The real binary, a slurm.conf of our own (SLURM_CONF from the environment): no daemon needed for either."""
    conf = tmp_path / "slurm.conf"
    conf.write_text(f"ClusterName=unit\nSlurmctldHost=localhost\n{accounting}\n")
    monkeypatch.setenv("SLURM_CONF", str(conf))
    with pytest.raises(BarehubError) as caught:
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, timeout=20)
    assert message in caught.value.message


def test_any_failure_of_sacct_is_an_error_with_what_it_said_or_its_exit_code():
    with pytest.raises(BarehubError, match="sacct exited 1 and says 'sacct: error: Invalid time format'"):
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(stderr="sacct: error: Invalid time format\n",
                                                                 returncode=1))
    with pytest.raises(BarehubError, match=r"sacct exited 137$"):
        usage_slurm.sessions(DECEMBER, CAPTURED_AT, run=answering(SACCT, returncode=137))
