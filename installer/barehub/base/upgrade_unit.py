"""An upgrade (and `barehub rollback`) in a transient unit of its own, so that it outlives the admin's session.

An upgrade stops the hub, migrates the database and starts the new hub (barehub.release_change). Run from an
SSH session, it died with the session: a dropped connection, a closed laptop, a Ctrl-C left no hub running
until someone ran the upgrade again. So bootstrap.py (which `barehub upgrade` execs) hands the work, on an
existing install, to `systemd-run --unit=<Paths.upgrade_unit>`: the unit's processes belong to systemd, not to
the session, and its output goes to the journal. This process only follows that output (journalctl) and
returns the upgrade's exit code; ending it (Ctrl-C, SIGHUP, SIGKILL) leaves the upgrade running, which then
finishes or rolls back by itself.

`barehub rollback`, the command that ends an interrupted upgrade, hands over to the same unit for the same reason
(one change of an install at a time): an admin whose session drops in it would otherwise need it once more.

`systemd-run --wait` gives the unit's exit code back; it runs in a session of its own, so a Ctrl-C or a hang-up
of the admin's terminal does not reach it, and its end never touches the unit (the unit is systemd's).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence, TextIO

from .errors import BarehubError
from .install_lock import InstallLock
from .paths import Paths
from .records import read_json_dict
from .waiting import poll

IN_UNIT_ENV = "BAREHUB_UPGRADE_UNIT"  # set inside the unit: the run there does the work itself
# What the unit takes from the admin's environment (a unit starts with systemd's own): where conda and the
# package index are found, and how the index is reached.
PASSED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
              "NO_PROXY", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
PASSED_ENV_PREFIXES = ("PIP_", "CONDA_", "MAMBA_")
FOLLOW_INTERVAL_S = 0.5
# The run's own error lines start so (bootstrap.py's and the barehub CLI's): from the first one on, the followed
# output goes to stderr, where a run in the foreground printed it.
ERROR_STARTS = ("barehub-bootstrap: error:", "barehub: error:")


def in_unit() -> bool:
    return bool(os.environ.get(IN_UNIT_ENV))


def is_running(paths: Paths) -> bool:
    """Whether this install's upgrade unit runs now."""
    try:
        state = subprocess.run(["systemctl", "is-active", paths.upgrade_unit], capture_output=True, text=True,
                               timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return state in ("active", "activating", "deactivating", "reloading")


def unit_command(paths: Paths, argv: Sequence[str], environ: Optional[dict] = None,
                 cwd: Optional[str] = None, what: str = "upgrade") -> List[str]:
    """The systemd-run command that runs `argv` (an upgrade, or a rollback) in this install's upgrade unit (pure)."""
    environ = os.environ if environ is None else environ
    passed = sorted(name for name in environ if name in PASSED_ENV or name.startswith(PASSED_ENV_PREFIXES))
    return ["systemd-run", f"--unit={paths.upgrade_unit}", "--collect", "--wait", "--quiet",
            "--service-type=exec", f"--description=barehub {what} of {paths.prefix}",
            f"--working-directory={cwd or working_directory()}",  # relative paths in argv stay what they were
            *(f"--setenv={name}={environ[name]}" for name in passed),
            f"--setenv={IN_UNIT_ENV}={paths.upgrade_unit}", "--setenv=PYTHONUNBUFFERED=1", "--", *argv]


def working_directory() -> str:
    """This process's, or / when it is gone (removed since, or not visible to systemd)."""
    try:
        cwd = os.getcwd()
    except OSError:
        return "/"
    return cwd if os.path.isdir(cwd) else "/"


def refuse_a_second(paths: Paths) -> None:
    """One change of an install at a time: an upgrade already in its unit, or any other run holding the lock."""
    if is_running(paths):
        raise BarehubError(f"an upgrade of {paths.prefix} is already running (unit {paths.upgrade_unit})",
                           f"follow it: journalctl -fu {paths.upgrade_unit}; `barehub status` says when it is done",
                           exit_code=75)
    holder = InstallLock(paths).holder()
    if holder:
        raise BarehubError(f"another barehub run is changing {paths.prefix}: {holder}",
                           "wait for it to finish, then run this again", exit_code=75)


def run_in_unit(paths: Paths, argv: Sequence[str], say: Callable[[str], None], out: TextIO = sys.stdout,
                err: TextIO = sys.stderr, what: str = "upgrade") -> int:
    """Run `argv` (a bootstrap.py; or `barehub rollback`, `what`) in the upgrade unit, show its output as it comes
    (on `out`, and its errors on `err`), return its exit code."""
    refuse_a_second(paths)
    unit = paths.upgrade_unit
    ends = "finishes or rolls back by itself" if what == "upgrade" else "finishes by itself"
    say(f"the {what} runs in its own unit, {unit}: it goes on if this session ends or you press Ctrl-C "
        f"(follow it again: journalctl -fu {unit})")
    clear_ended(unit)
    since = time.time()
    with tempfile.TemporaryFile("w+") as errors:  # a file, not a pipe: systemd-run may outlive this process
        proc = subprocess.Popen(unit_command(paths, argv, what=what), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=errors, start_new_session=True)
        try:
            shown = follow(unit, since, proc.poll, out, err)
        except KeyboardInterrupt:
            print(f"stopped showing its output; the {what} goes on in {unit} and {ends}.\n"
                  f"follow it: journalctl -fu {unit}; `barehub status` says when it is done", file=err)
            return 130
        errors.seek(0)
        refused = errors.read().strip()
    if proc.returncode and refused and not shown:  # systemd-run's own: the unit did not start
        raise BarehubError(f"could not start the {what} unit {unit}: {refused} ({unit_state(unit)})",
                           f"see: journalctl -xe; a unit of that name left over: systemctl stop {unit}; "
                           f"systemctl reset-failed {unit}; then run this again")
    if proc.returncode:
        print(f"the {what} exited {proc.returncode}; its whole log: journalctl -u {unit} --since @{since:.0f}",
              file=err)
    return proc.returncode


def unit_state(unit: str) -> str:
    """What systemd says of the unit, for an error: "LoadState=loaded, ActiveState=inactive, ..."."""
    try:
        shown = subprocess.run(["systemctl", "show", "--property=LoadState,ActiveState,SubState,Result,Refs", unit],
                               capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"its state unknown: {e}"
    return ", ".join(shown.split())


def clear_ended(unit: str, wait_s: float = 30.0) -> None:
    """Unload the unit of this name left by an earlier run (refuse_a_second made sure none runs): systemd-run
    refuses a transient unit whose name is still loaded ("was already loaded or has a fragment file"). A run that
    failed leaves its unit failed until systemd collects it; in a full test run a rollback that had just failed
    (as it should) made the next one, a second later, refuse to start."""
    subprocess.run(["systemctl", "reset-failed", unit], capture_output=True, timeout=30)
    poll(lambda: subprocess.run(["systemctl", "show", "--property=LoadState", "--value", unit], capture_output=True,
                                text=True, timeout=30).stdout.strip() in ("", "not-found"), wait_s, 0.1)


def follow(unit: str, since: float, finished: Callable[[], Optional[int]], out: TextIO, err: TextIO) -> int:
    """Show the unit's output from the journal until `finished()` says the unit ended, then the rest; the number
    of lines shown."""
    cursor, to, shown = None, out, 0
    while True:
        done = finished() is not None
        if done:
            subprocess.run(["journalctl", "--sync"], capture_output=True, timeout=60)  # all it logged is readable
        lines, cursor = journal_lines(unit, since, cursor)
        for line in lines:
            if line.startswith(ERROR_STARTS):
                to = err
            print(line, file=to, flush=True)
        shown += len(lines)
        if done:
            return shown
        time.sleep(FOLLOW_INTERVAL_S)


def journal_lines(unit: str, since: float, cursor: Optional[str]) -> "tuple[list[str], Optional[str]]":
    """What the unit's processes logged after `cursor` (or since `since`), and the cursor after it."""
    where = [f"--after-cursor={cursor}"] if cursor else [f"--since=@{int(since)}"]
    proc = subprocess.run(["journalctl", "--no-pager", "--quiet", "--output=cat", "--show-cursor", *where,
                           f"_SYSTEMD_UNIT={unit}"], capture_output=True, text=True, errors="replace", timeout=60)
    lines = proc.stdout.splitlines()
    if lines and lines[-1].startswith("-- cursor: "):
        return lines[:-1], lines[-1][len("-- cursor: "):]
    return lines, cursor


def can_hand_over() -> bool:
    """Whether this run can hand its work to the unit: not inside the unit already, as root, on a machine systemd
    runs."""
    return not in_unit() and os.geteuid() == 0 and os.path.isdir("/run/systemd/system")


def wanted(paths: Paths, release: Optional[str], this_version: str) -> bool:
    """Whether a bootstrap.py run moves an existing install to another release (then it runs in the unit): it can
    hand over (can_hand_over), and the release differs (or is 'latest')."""
    if not can_hand_over():
        return False
    installed = installed_version(paths)
    if installed is None:  # a first install: no hub to keep
        return False
    target = release or this_version
    return target == "latest" or target != installed


def installed_version(paths: Paths) -> Optional[str]:
    version = read_json_dict(paths.release_file).get("version")
    return version if isinstance(version, str) else None
