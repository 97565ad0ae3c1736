"""What the running hub says about itself (state/hub-run.json, written by barehub.hub at each start),
and the bounded waits of reloads and installs until a hub serves through traefik.
"""
from __future__ import annotations

import json
import logging
import re
import signal
import time
from dataclasses import dataclass

from barehub import units
from barehub.config_loading import CURRENT, KNOWN_GOOD
from barehub.fsutil import read_private
from barehub.health import wait_for_ok
from barehub.base.paths import Paths
from barehub.settings import Settings
from barehub.base.errors import BarehubError
from barehub.systemd import Systemctl

log = logging.getLogger("barehub")
START_DEADLINE_S = 60  # measured: a hub (re)starts in 2-4 s, its known-good fallback in another 2-4 s
# After the hub has recorded its start, its routes are in traefik: it answers within a second (measured
# 0.1-0.5 s). Longer only keeps /hub hanging in traefik's retries before the known-good fallback.
HEALTH_DEADLINE_S = 20
# Healthy means answering /hub/health through traefik for this long without a miss: right after a start,
# traefik may still route to the hub's previous target for a moment, which the new hub itself answers
# when only its connect URL changed (measured: a reload with hub_connect_url leading nowhere passed a
# single-answer check).
STEADY_S = 2.0


@dataclass(frozen=True)
class Run:
    pid: int
    started: float
    config: str  # CURRENT or KNOWN_GOOD
    digest: str
    base_url: str
    failed: dict | None  # the current config's failure, when the hub fell back to the known-good one

    @property
    def health_path(self) -> str:
        return f"{self.base_url}hub/health"


def read_run(paths: Paths) -> Run | None:
    """The record of the hub's last start, read only from a regular file: the hub user owns state/ (a FIFO
    planted there hung `barehub status` and a reload, holding the install lock). Its strings are the hub
    user's: they reach root's terminal only through barehub.terminal."""
    try:
        data = json.loads(read_private(paths.hub_run_file))
        return Run(int(data["pid"]), float(data["started"]), str(data["config"]), str(data.get("digest") or ""),
                   url_path(data.get("base_url")), data.get("failed") if isinstance(data.get("failed"), dict) else None)
    except BarehubError as e:
        log.warning("%s", e.message)
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return None


URL_PATH = re.compile(r"/([A-Za-z0-9._~!$&'()*+,;=:@%-]+/)*\Z")


def url_path(value) -> str:
    """The hub's base_url as root asks it for /hub/health: a URL path of safe characters ("/jupyter/"), else
    "/" (JupyterHub's own base_url is always one; anything else was written by someone else)."""
    return value if isinstance(value, str) and URL_PATH.match(value) else "/"


def base_url(paths: Paths) -> str:
    run = read_run(paths)
    return run.base_url if run else "/"


def wait_for_start(paths: Paths, since: float, systemctl: Systemctl, deadline_s: float = START_DEADLINE_S) -> Run:
    """The record of a hub started after `since`; gives up as soon as the unit restarted it once, or failed.

    One exit is enough: each start of barehub.hub tries the current fragments and, when they fail, the known-good
    ones in the same process, so a hub that exits has failed with both, and a restart runs the same two again.
    Waiting for 3 restarts (as before) kept /hub down ~16 s longer in an upgrade whose new hub could not start,
    and three times that on a loaded machine: in a full test run a /hub request then waited over 60 s."""
    restarts = int(systemctl.show(units.HUB_UNIT, "NRestarts").get("NRestarts") or 0)
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        run = read_run(paths)
        if run and run.started >= since:
            return run
        state = systemctl.show(units.HUB_UNIT, "NRestarts", "ActiveState")
        if int(state.get("NRestarts") or 0) > restarts or state.get("ActiveState") == "failed":
            raise BarehubError(f"the hub does not start; its last log lines:\n{systemctl.journal_tail(units.HUB_UNIT)}",
                               f"see: journalctl -u {units.HUB_UNIT} -n 80")
        time.sleep(0.1)
    raise BarehubError(f"the hub did not start within {deadline_s:.0f} s", f"see: journalctl -u {units.HUB_UNIT} -n 80")


def wait_until_serving(paths: Paths, settings: Settings, since: float, systemctl: Systemctl) -> tuple[Run, float]:
    """Wait for the hub started after `since` to answer /hub/health through traefik; returns it and the
    seconds since `since`.

    If it started with the current fragments but does not become healthy, it is sent back to the known-good
    ones (SIGUSR2). Either way a hub on the known-good config is an error: the new config is not applied.
    """
    run = wait_for_start(paths, since, systemctl)
    hint = f"see: journalctl -u {units.HUB_UNIT} -u {units.PROXY_UNIT} -n 80"
    try:
        wait_for_ok(settings.local_url(run.health_path), HEALTH_DEADLINE_S, "the hub (through traefik)", hint,
                    steady_s=STEADY_S)
    except BarehubError as e:
        if run.config != CURRENT or not paths.known_good.is_dir():
            raise
        fallback_since = time.time()
        systemctl.kill_main(units.HUB_UNIT, signal.SIGUSR2)
        back = wait_for_start(paths, fallback_since, systemctl)
        wait_for_ok(settings.local_url(back.health_path), HEALTH_DEADLINE_S, "the hub (through traefik)", hint)
        raise BarehubError(f"the hub with the new config did not become healthy ({e.message}); "
                           f"it serves the last known-good config again", hint)
    if run.config == KNOWN_GOOD:
        error = (run.failed or {}).get("error", "unknown error")
        raise BarehubError(f"the hub cannot start with the config in {paths.config_d}: {error}\n"
                           "it serves the last known-good config again",
                           f"fix the file, check it with `barehub check`, then: systemctl reload {units.HUB_UNIT}")
    return run, time.time() - since
