"""The one place barehub talks to systemd. Tests replace `Systemctl` with a recorder."""
from __future__ import annotations

import fnmatch
import json
import subprocess
from pathlib import Path
from typing import Sequence

from barehub.base.errors import BarehubError
from barehub.base.waiting import poll


class Systemctl:
    def __init__(self, timeout: float = 120):
        self.timeout = timeout

    def execute(self, argv: Sequence[str], what: str, hint: str) -> subprocess.CompletedProcess:
        """One systemd tool (argv[0]) run to its end within the timeout; `what` names it in the error if it does
        not finish."""
        try:
            return subprocess.run(list(argv), capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError:
            raise BarehubError(f"{argv[0]} not found", "barehub needs a machine booted with systemd")
        except subprocess.TimeoutExpired:
            raise BarehubError(f"{what} did not finish in {self.timeout:.0f} s", hint)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = self.execute(["systemctl", *args], f"systemctl {' '.join(args)}", "see journalctl -xe")
        if check and proc.returncode != 0:
            raise BarehubError(f"systemctl {' '.join(args)} failed: {proc.stderr.strip()}",
                               f"see: journalctl -u {args[-1]} -n 50")
        return proc

    def start_transient(self, unit: str, command: Sequence[str], options: Sequence[str]) -> None:
        """Have systemd start `command` as the transient service `unit` (systemd-run's `options`: --uid, --property
        ...), without waiting for the unit to come up: the caller watches it (barehub.local_spawner). Raises, with
        systemd's reason, when systemd refuses the unit (a name it still holds, a property it cannot parse).

        --no-block: a waiting systemd-run follows every job and unit change systemd announces until its own job is
        done, so a class starting at once made systemd's work grow with the square of the servers starting.
        Measured (200 systemd-runs at once, 2 cores): systemd 8.1 CPU-s and the systemd-runs 8.1, against 2.2 and
        1.8 with --no-block; 100 at once: 2.0 and 2.1 against 0.9 and 0.7."""
        proc = self.execute(["systemd-run", "--no-block", "--quiet", f"--unit={unit}", *options, "--", *command],
                            f"systemd-run --unit={unit}", "see journalctl -b -u init.scope")
        if proc.returncode != 0:
            raise BarehubError(f"systemd refused to start the unit {unit}: {proc.stderr.strip()}",
                               f"see: journalctl -u {unit} -n 50")

    def daemon_reload(self) -> None:
        self.run("daemon-reload")

    def enable(self, units: Sequence[str]) -> None:
        self.run("enable", "--quiet", *units)

    def disable_now(self, units: Sequence[str]) -> None:
        self.run("disable", "--now", "--quiet", *units, check=False)

    def start(self, unit: str) -> None:
        self.run("start", unit)

    def stop(self, unit: str) -> None:
        self.run("stop", unit)

    def stop_all(self, unit: str, grace: float = 10.0) -> None:
        """Stop the unit and end whatever its stop left in its cgroup: SIGTERM, then SIGKILL after `grace` s,
        each followed by a wait of up to `grace` s for the cgroup to be empty.

        A unit with KillMode=process leaves its main process's children behind: the user servers of a
        release before server units, which a later start of the new hub unit would find as left-overs. The wait
        after SIGKILL matters on a busy machine: the next step (a database migration, the new hub's start)
        must not begin while they are still being torn down."""
        self.stop(unit)
        for signal_args in ((), ("--signal=SIGKILL",)):
            if not self.show(unit, "ControlGroup").get("ControlGroup"):
                return
            self.run("kill", "--kill-whom=all", *signal_args, unit, check=False)
            if poll(lambda: not self.show(unit, "ControlGroup").get("ControlGroup"), grace, 0.2):
                return

    def restart(self, unit: str) -> None:
        self.run("restart", unit)

    def reset_failed(self, unit: str) -> None:
        """Forget the unit's failed state and its recent starts. systemd refuses a 6th start within 10 s
        (StartLimitBurst=5 in StartLimitIntervalSec=10 s, the defaults): a rollback's start of the old hub came
        as the 5th, after the new hub's start and systemd's restarts of it."""
        self.run("reset-failed", unit, check=False)  # a unit that never failed has nothing to forget

    def unload(self, unit: str, wait_s: float) -> bool:
        """Have systemd forget an ended unit, so that a transient unit of its name can start again (systemd-run
        refuses a name still loaded: "was already loaded or has a fragment file"): its failed state reset, then up
        to `wait_s` s for systemd to unload it, which it does once it knows the unit's cgroup is empty. Whether
        it is gone."""
        self.reset_failed(unit)
        return bool(poll(lambda: self.show(unit, "LoadState").get("LoadState") in (None, "", "not-found"),
                         wait_s, 0.1))

    def kill_main(self, unit: str, sig: int) -> None:
        """Signal the unit's main process only (the hub reloads itself in place on SIGHUP/SIGUSR2)."""
        self.run("kill", "--kill-whom=main", f"--signal={int(sig)}", unit)

    def main_pid(self, unit: str) -> int:
        return int(self.show(unit, "MainPID").get("MainPID") or 0)

    def is_active(self, unit: str) -> bool:
        return self.run("is-active", "--quiet", unit, check=False).returncode == 0

    def is_enabled(self, unit: str) -> bool:
        return self.run("is-enabled", "--quiet", unit, check=False).returncode == 0

    def journal_tail(self, unit: str, lines: int = 15) -> str:
        proc = subprocess.run(["journalctl", "--no-pager", "--output=cat", f"--lines={lines}", "--unit", unit],
                              capture_output=True, text=True, timeout=self.timeout)
        return proc.stdout

    def loaded_units(self, pattern: str) -> list[dict[str, str]]:
        """Units matching `pattern` that are running (or failed), each with its slice, user, state and memory."""
        out = self.run("list-units", "--plain", "--no-legend", pattern, check=False).stdout
        names = sorted(line.split()[0] for line in out.splitlines() if line.strip())
        shown = self.show_many(names, "Slice", "User", "ActiveState", "MemoryCurrent", "MemoryMax")
        return [{"unit": unit, **shown.get(unit, {})} for unit in names]

    def unit_states(self, units: Sequence[str]) -> dict[str, dict[str, str]]:
        """LoadState, ActiveState and SubState of many service units (names without ".service") from one
        `systemctl list-units`: one ListUnitsByPatterns call to systemd, whatever their number. A unit systemd does
        not hold (one that ended well is forgotten at once) has LoadState=not-found. Raises when systemctl fails.

        Not `systemctl show -p ... UNIT...`: that sends one GetAll of every property per unit (its cgroup's memory,
        CPU and IO counters read each time) and parses them all in systemctl. Measured with 200 running server
        units (bench/polling-results.md): one `show` cost 158 ms of systemctl's CPU (the hub's cgroup) and 128 ms of
        systemd's, one `list-units` 8 and 5 ms; the hub's idle CPU went from 1.54 to 0.88 s a minute."""
        if not units:
            return {}
        listed = self.listed_states(*(f"{unit}.service" for unit in units))
        return {unit: listed.get(f"{unit}.service", {"LoadState": "not-found", "ActiveState": "inactive",
                                                     "SubState": "dead"}) for unit in units}

    def listed_states(self, *patterns: str) -> dict[str, dict[str, str]]:
        """{unit: LoadState, ActiveState, SubState, Job} of every unit systemd holds that matches one of `patterns`
        (names or globs), from one `systemctl list-units --all` (see unit_states). Job is the type of the job queued
        for the unit ("start" while a unit started with `systemd-run --no-block` waits for systemd to run it), or
        empty. Raises when systemctl fails.

        As JSON: the table's JOB column is there only while some unit has a job, so a description beginning with
        "start" could not be told from it. A systemd that prints no JSON (older than 246) gives the table, read
        without the job."""
        proc = self.run("list-units", "--all", "--plain", "--no-legend", "--full", "--no-pager", "--output=json",
                        "--", *patterns, check=False)
        if proc.returncode != 0:
            raise BarehubError(f"systemctl list-units {' '.join(patterns)[:200]} failed: {proc.stderr.strip()}",
                               "see journalctl -b -u init.scope")
        if proc.stdout.lstrip().startswith("["):  # (systemctl lists only the units the patterns match)
            return {row["unit"]: {"LoadState": row.get("load", ""), "ActiveState": row.get("active", ""),
                                  "SubState": row.get("sub", ""), "Job": row.get("job", "")}
                    for row in json.loads(proc.stdout)}
        states = {}
        for line in proc.stdout.splitlines():
            # UNIT LOAD ACTIVE SUB [JOB] DESCRIPTION, maybe after a status mark; the names hold no blanks
            words = line.split()
            at = next((i for i, word in enumerate(words[:2])
                       if any(fnmatch.fnmatchcase(word, pattern) for pattern in patterns)), None)
            if at is not None and len(words) >= at + 4:
                states[words[at]] = dict(zip(("LoadState", "ActiveState", "SubState"), words[at + 1:at + 4]))
        return states

    def show(self, unit: str, *props: str) -> dict[str, str]:
        return properties_in(self.run("show", unit, *(f"--property={p}" for p in props), check=False).stdout)

    def show_many(self, units: Sequence[str], *props: str) -> dict[str, dict[str, str]]:
        """`show` of many units from one systemctl call ({unit: {property: value}}): `barehub status` with 200
        servers forked 200 systemctls. systemctl prints one block per unit, blank lines between them; each block
        names its unit (Id), as a block of a unit that has no such property would be empty."""
        if not units:
            return {}
        out = self.run("show", *(f"--property={p}" for p in ("Id", *props)), "--", *units, check=False).stdout
        shown = {}
        for block in out.split("\n\n"):
            properties = properties_in(block)
            if "Id" in properties:
                shown[properties.pop("Id")] = properties
        return shown


def properties_in(text: str) -> dict[str, str]:
    """`systemctl show`'s NAME=VALUE lines (a value may hold "=")."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def remove_unit_files(systemctl: Systemctl, names: Sequence[str], unit_dir: Path) -> list[Path]:
    """Stop and disable those of the units `names` whose files are in `unit_dir`, then delete the files
    (the cert units when HTTPS no longer uses the site's files, every unit on uninstall); the files removed."""
    present = [unit_dir / name for name in names if (unit_dir / name).exists()]
    if present:
        systemctl.disable_now([path.name for path in present])
        for path in present:
            path.unlink()
    return present
