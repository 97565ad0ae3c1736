"""A user's server exits within seconds of SIGTERM (Stop, the culler, an uninstall, scancel), never waiting for
systemd's (or Slurm's) SIGKILL: a jupyter-server extension, enabled for every server of the env.

Why. In full test runs, a server stopped right after JupyterLab loaded logged "received signal 15, stopping",
shut its extensions and kernels down, and then did not exit: systemd killed it after TimeoutStopSec and the
unit ended "failed (timeout)". A dump of the process (py-spy, tests/integration/test_browser.py keeps one) showed
the main thread in threading._shutdown, joining an idle, non-daemon "AnyIO worker thread". jupyter-server runs
its file operations (the contents API JupyterLab calls as it loads) in anyio's worker threads; anyio stops a
worker when the task it calls its "root task" ends, and for a request served on a keep-alive connection that is
tornado's task for the connection, which never ends once the server's event loop stops. Python then waits
for that thread for ever at exit. Timing-dependent: 2 of 3 stops right after JupyterLab's loading, none with a
kernel open for a while.

Here, for the cause and for the class:
- at exit, before Python joins its threads (threading's own exit hooks, as concurrent.futures uses them), every
  anyio worker thread is told to finish (the message anyio itself sends it), so exit does not wait for it;
- whatever else may hold the exit (an extension's thread, a stuck shutdown), EXIT_DEADLINE_S after the stop
  began the process logs which threads are still there and exits: systemd's SIGTERM is answered within
  seconds in every case (kernels got SIGTERM from systemd or scancel with the server, as all the unit's or job's
  processes do), with an exit status that shows it was forced.
"""
from __future__ import annotations

import logging
import os
import sys
import threading

EXIT_DEADLINE_S = 4.0  # from the stop's start; TimeoutStopSec is 20 s, the user waits on Stop meanwhile
# A forced exit is not a clean one: its status says so (128 + SIGTERM, as a shell reports a process SIGTERM
# ended), and the unit's result shows it ("exit-code", the sessions page "exited with an error (status 143)").
FORCED_EXIT_STATUS = 143
ANYIO_WORKER = "AnyIO worker thread"

log = logging.getLogger(__name__)


def finish_worker_threads() -> None:
    """Tell anyio's worker threads to finish (None in their queue is anyio's own stop message): an idle one
    returns at once, a busy one after its call."""
    for thread in threading.enumerate():
        queue = getattr(thread, "queue", None)
        if thread.name == ANYIO_WORKER and hasattr(queue, "put_nowait"):
            try:
                queue.put_nowait(None)
            except Exception:  # a full queue: the worker is busy, and the deadline below still holds
                pass


def exit_by_deadline(deadline: float = EXIT_DEADLINE_S) -> threading.Timer:
    """A daemon timer that ends the process if it is still there `deadline` s from now."""
    def overdue() -> None:
        left = [t.name for t in threading.enumerate()
                if t not in (threading.current_thread(), threading.main_thread()) and not t.daemon]
        log.warning("barehub: the server did not exit within %.0f s of being stopped (threads left: %s); "
                    "exiting now", deadline, ", ".join(left) or "none")
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(FORCED_EXIT_STATUS)

    timer = threading.Timer(deadline, overdue)
    timer.daemon = True
    timer.start()
    return timer


def _jupyter_server_extension_points():
    return [{"module": "barehub.server_exit"}]


def _load_jupyter_server_extension(serverapp) -> None:
    threading._register_atexit(finish_worker_threads)  # run by threading._shutdown, before it joins threads
    stop = serverapp.stop

    def stop_within_deadline(*args, **kwargs):
        if not getattr(serverapp, "_barehub_exit_deadline", None):
            serverapp._barehub_exit_deadline = exit_by_deadline()
        return stop(*args, **kwargs)

    serverapp.stop = stop_within_deadline  # jupyter-server's SIGTERM (and SIGINT) handler calls self.stop()
