"""Local servers' usage from systemd's own accounting, against a real systemd (barehub.usage_ledger): a server
that spun its CPU is in the ledger with what its cgroup counted, `barehub usage` says so per user and per group
(JSON and CSV), a server that ended while the hub was stopped is not lost, and one that ended without its own
record (a unit of an earlier release, a power loss) is written down by the sampler from its last sample.

Uses the session's install; its own users (uma, in the group "physics"; vic); leaves their servers stopped.
"""
from __future__ import annotations

import csv
import io
import json

import pytest

from tests.integration.helpers import (HUB, MEASUREMENTS, PASSWORDS, PREFIX, add_local_user, cgroup_cpu_s,
                                       wait_until)
from tests.integration.hubclient import HubUser

GIB = 1024 ** 3
LEDGER = f"{PREFIX}/records/usage"
BAREHUB = f"{PREFIX}/conda/bin/barehub"
SPIN_S = 10  # the server's own start and stop (measured: ~0.7 s of CPU after the reading) stay well inside 10 %
SPIN = (f"import time\nt = time.process_time()\nwhile time.process_time() - t < {SPIN_S}: pass\n"
        "held = b'x' * (300 * 2 ** 20)\nprint(round(time.process_time() - t, 2))")


@pytest.fixture(scope="module")
def users(container, base_url):
    for name in ("uma", "vic"):
        add_local_user(container, name)
    container.run("getent group physics || groupadd physics; usermod -g physics uma")
    return {name: HubUser(base_url, name, PASSWORDS[name]) for name in ("uma", "vic")}


def ledger_lines(container) -> list[dict]:
    out = container.run(f"cat {LEDGER}/*.jsonl 2>/dev/null || true").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]


def sessions_of(container, unit: str) -> list[dict]:
    return [line for line in ledger_lines(container) if line["id"].startswith(unit + "@")]


def usage_json(container, *args: str) -> dict:
    """`barehub usage` of the local servers (this machine has sacct, for the Slurm tests, but no Slurm running)."""
    return json.loads(container.run(f"{BAREHUB} usage --prefix {PREFIX} --source local --json {' '.join(args)}").stdout)


def row(report: dict, key: str) -> dict:
    return next(r for r in report["rows"] if r["key"] == key)


def test_a_servers_cpu_and_memory_are_in_the_ledger_as_its_cgroup_counted(container, users):
    uma, unit = users["uma"], "jupyter-uma-singleuser.service"
    assert container.run("systemctl is-active barehub-usage.timer", check=False).stdout.strip() == "active"
    assert uma.login().status_code == 302
    try:
        uma.spawn()
    except AssertionError:
        print(container.run(f"journalctl -u {HUB} -u {unit} --no-pager -n 80", check=False).stdout)
        raise
    props = container.run(f"systemctl show -p ExecStopPost -p CPUAccounting -p MemoryAccounting {unit}").stdout
    assert "barehub.usage_ledger stop" in props and "CPUAccounting=yes" in props, props
    container.run("systemctl start barehub-usage.service")  # a sample while it runs (the timer's would do)
    spun = float(uma.execute(SPIN, timeout=120).strip())
    assert spun >= SPIN_S
    before_stop = cgroup_cpu_s(container, unit)
    r = uma.api("DELETE", f"users/uma/server")
    assert r.status_code in (202, 204), r.text
    wait_until(lambda: sessions_of(container, unit), timeout=60, interval=0.5)
    [line] = sessions_of(container, unit)
    MEASUREMENTS["usage: the stop record's journal line"] = container.run(
        f"journalctl -u {unit} --no-pager -o cat | grep 'usage: ' | tail -1", check=False).stdout.strip()
    error = (line["cpu_s"] - before_stop) / before_stop
    MEASUREMENTS["usage: recorded CPU vs the cgroup's just before the stop (%)"] = round(100 * error, 1)
    MEASUREMENTS["usage: uma's server's CPU (s), of it spun in the cell"] = f"{line['cpu_s']:.2f}, {spun:.2f}"
    assert line["cpu_s"] >= spun and abs(error) < 0.10, (line, before_stop)
    assert line["mem_peak_bytes"] > 300 * 2 ** 20 and line["mem_avg_bytes"] > 0, line
    assert (line["user"], line["group"], line["server"], line["end"] is not None) == ("uma", "physics", "", True)
    assert container.run(f"ls {LEDGER}/running/").stdout.strip() == ""  # its sample file went with the record
    mode = container.run(f"stat -c %a {LEDGER} {LEDGER}/*.jsonl").stdout.split()
    assert set(mode) == {"700", "600"}, mode

    by_user = usage_json(container, "--by user")
    mine = row(by_user, "uma")
    assert mine["sessions"] == 1 and mine["cpu_hours"] * 3600 == pytest.approx(line["cpu_s"], rel=1e-6)
    assert mine["mem_peak_gib"] * GIB == pytest.approx(line["mem_peak_bytes"], rel=1e-6)
    assert row(usage_json(container, "--by group"), "physics")["sessions"] == 1
    # as the hub reads it, in its sandbox: the prefix read-only (ProtectSystem=strict)
    sandboxed = container.run(f"systemd-run --quiet --wait --pipe -p ProtectSystem=strict -p ProtectControlGroups=yes "
                              f"{BAREHUB} usage --prefix {PREFIX} --source local --json --by user")
    assert row(json.loads(sandboxed.stdout), "uma")["sessions"] == 1, sandboxed.stdout + sandboxed.stderr


def test_a_server_that_ended_while_the_hub_was_stopped_is_still_counted(container, users):
    vic, unit = users["vic"], "jupyter-vic-singleuser.service"
    assert vic.login().status_code == 302
    vic.spawn()
    container.run(f"systemctl stop {HUB}")
    try:
        container.run(f"systemctl stop {unit}")
    finally:
        container.run(f"systemctl start {HUB}")
    wait_until(lambda: vic.api("GET", "users/vic").status_code == 200, timeout=120, interval=1)
    [line] = sessions_of(container, unit)
    assert line["user"] == "vic" and line["cpu_s"] > 0 and line["note"] in ("", "average memory from one "
                                                                            "reading at the stop (it ran for less "
                                                                            "than one sampling interval)")
    assert row(usage_json(container, "--by user"), "vic")["sessions"] == 1


def test_a_unit_that_ended_without_its_own_record_is_written_from_its_last_sample(container, users):
    """A server unit of a release before the ledger (no ExecStopPost), or one the power took: the sampler saw it
    running, and writes it down as of that sample once it is gone."""
    unit = "jupyter-vic-old.service"
    # 2 s of CPU, however long a busy machine takes to give them (a 2 s busy loop got 1.36 s in a CI run)
    container.run("cat > /tmp/spin-2s.py", input="import time\nt = time.process_time()\n"
                                                 "while time.process_time() - t < 2: pass\n")
    container.run(f"systemd-run --unit {unit} --slice jupyterhub-users.slice --uid vic -p MemoryAccounting=yes "
                  f"-p CPUAccounting=yes /bin/sh -c '/usr/bin/python3 /tmp/spin-2s.py; exec sleep 600'")
    wait_until(lambda: cgroup_cpu_s(container, unit) >= 2.0, 120, interval=0.5)
    container.run("systemctl start barehub-usage.service")
    sampled = json.loads(container.run(f"cat {LEDGER}/running/{unit}.json").stdout)
    assert sampled["samples"] == 1 and sampled["cpu_s"] >= 1.5, sampled
    container.run(f"systemctl stop {unit}")
    assert sessions_of(container, unit) == []  # nothing wrote it at its stop
    container.run("systemctl start barehub-usage.service")
    [line] = sessions_of(container, unit)
    assert line["note"].startswith("ended while unobserved") and line["end"] == sampled["last_at"], line
    assert line["cpu_s"] == sampled["cpu_s"]
    assert container.run(f"ls {LEDGER}/running/").stdout.strip() == ""


def test_the_csv_report_parses_and_its_total_adds_up_the_rows(container, users):
    text = container.run(f"{BAREHUB} usage --prefix {PREFIX} --source local --csv --by user").stdout
    rows = list(csv.DictReader(io.StringIO(text)))
    *people, total = rows
    assert total["user"] == "total" and {"uma", "vic"} <= {r["user"] for r in people}
    assert int(total["sessions"]) == sum(int(r["sessions"]) for r in people) >= 3
    for column in ("wall_hours", "cpu_hours", "mem_gib_hours"):
        assert float(total[column]) == pytest.approx(sum(float(r[column]) for r in people), abs=1e-3), column


def test_barehub_usage_on_a_host_with_slurms_commands_but_no_slurm_counts_the_local_servers_and_says_so(
        container, users):
    """This machine's containers have sacct (for the Slurm tests) and no slurm.conf: --source all (the default)
    answers from the ledger and says that no Slurm jobs were counted here, instead of failing or reading zeros."""
    proc = container.run(f"{BAREHUB} usage --prefix {PREFIX}")
    assert "Slurm jobs: none counted here (Slurm is not configured on this host" in proc.stdout, proc.stdout
    assert "local servers (systemd):" in proc.stdout and "uma" in proc.stdout


@pytest.fixture
def with_fragment(container):
    """Puts a fragment in place and reloads the hub; removes it and reloads again at the end."""
    placed = []

    def put(name: str, text: str) -> None:
        container.run(f"cat > {PREFIX}/jupyterhub_config.d/{name}", input=text)
        placed.append(name)
        container.run(f"systemctl reload {HUB}")

    yield put
    for name in placed:
        container.run(f"rm -f {PREFIX}/jupyterhub_config.d/{name}")
    container.run(f"systemctl reload {HUB}")


def test_a_user_sees_her_own_usage_and_nobody_elses_an_admin_sees_everyones(container, users, base_url,
                                                                            with_fragment):
    add_local_user(container, "wes")
    # (any allow config turns barehub's default "every local user" off: kept on here)
    with_fragment("60-test-admin.py", 'c.Authenticator.admin_users = {"wes"}\nc.PAMAuthenticator.allow_all = True\n')
    uma, wes = users["uma"], HubUser(base_url, "wes", PASSWORDS["wes"])
    assert uma.login().status_code == 302 and wes.login().status_code == 302
    wait_until(lambda: uma.api("GET", "users/uma/usage").status_code == 200, 60, interval=1)
    own = uma.api("GET", "users/uma/usage").json()
    assert own["timezone"] == "UTC" and own["total"]["sessions"] >= 1 and own["total"]["cpu_hours"] > SPIN_S / 3600
    assert uma.api("GET", "users/vic/usage").status_code in (403, 404)  # her own token, another user
    assert uma.api("GET", "usage").status_code == 403
    page = uma.session.get(f"{base_url}/hub/usage", timeout=30)
    assert page.status_code == 200 and "Your usage this month" in page.text and "Everyone" not in page.text
    everyone = wes.api("GET", "usage", params={"by": "user"}).json()
    assert {"uma", "vic"} <= {r["key"] for r in everyone["rows"]}
    assert wes.api("GET", "users/uma/usage").status_code == 200  # an admin reads hers too
    assert "Everyone (admins only)" in wes.session.get(f"{base_url}/hub/usage", timeout=30).text
    assert uma.api("GET", "users/uma/usage", params={"since": "last week"}).status_code == 400


def test_a_users_cpu_quota_refuses_his_spawn_saying_why_and_spares_others(container, users, base_url,
                                                                          with_fragment):
    """A quota of 0 CPU hours for vic (he has used some): his spawn is refused with the quota, his use and the
    reset, through the REST API and on the page his browser lands on after login; uma, without a quota, starts
    hers."""
    with_fragment("60-quotas.py", 'c.Barehub.quotas = {"user:vic": {"cpu_hours": 0}}\n')
    vic, uma = HubUser(base_url, "vic", PASSWORDS["vic"]), HubUser(base_url, "uma", PASSWORDS["uma"])
    assert vic.login().status_code == 302 and uma.login().status_code == 302
    page = vic.session.get(f"{base_url}/hub/spawn", timeout=60)
    assert page.status_code == 403 and "Quota reached: you have used " in page.text, page.text[-2000:]
    r = vic.api("POST", "users/vic/server")
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert message.startswith("Quota reached: you have used ") and " of your 0 CPU hours this month. The quota " \
        "resets on " in message, message
    assert container.run("systemctl is-active jupyter-vic-singleuser.service", check=False).stdout.strip() != "active"
    uma.spawn()
    assert uma.api("DELETE", "users/uma/server").status_code in (202, 204)
