"""`InstallLock`: one bootstrap, install, upgrade or rollback at a time per prefix, handed on to the installer."""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from .errors import BarehubError
from .paths import Paths


class InstallLock:
    """An exclusive lock per prefix, held by bootstrap.py and handed to the installer it execs.

    flock(2) on PREFIX/records/install.lock: the kernel drops it when the holder exits, so an
    interrupted run never leaves a stale lock. The holder writes its pid and command line into the
    file, so that a second run can say who holds it.
    """

    ENV = "BAREHUB_LOCK_FD"

    def __init__(self, paths: Paths):
        self.path = paths.lock_file
        self.fd: Optional[int] = None

    def acquire(self) -> "InstallLock":
        inherited = self._inherited()
        if inherited is not None:
            self.fd = inherited
            return self
        self.path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise BarehubError(f"another barehub run is changing {self.path.parents[1]}: {holder}",
                               "wait for it to finish, then run this again", exit_code=75)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        self.fd = fd
        return self

    def holder(self) -> Optional[str]:
        """Who holds the lock now ("pid N: command"), or None when nobody does; changes nothing (`barehub
        status` asks, as any user: the file is 0644)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.read(fd, 4096).decode(errors="replace").strip() or "another process"
        finally:
            os.close(fd)  # drops a shared lock taken just now
        return None

    def _inherited(self) -> Optional[int]:
        """The lock fd bootstrap.py passed on when it exec'd this installer, if it is this lock."""
        value = os.environ.get(self.ENV, "")
        if not value.isdigit():
            return None
        fd = int(value)
        try:
            same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            if same:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # succeeds for our own open file description
                return fd
        except OSError:
            return None
        return None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def pass_on(self) -> None:
        """Keep the lock across exec(): the installer that bootstrap.py execs finds it in its environment."""
        assert self.fd is not None
        os.set_inheritable(self.fd, True)
        os.environ[self.ENV] = str(self.fd)

    def exec_installer(self, python: Path, prefix: Path, argv: Sequence[str] = ()) -> None:
        """Replace this process with the installer of the env of `python`, which inherits this lock."""
        self.pass_on()
        command = installer_argv(python, prefix, argv)
        os.execv(command[0], command)

    def run_installer(self, python: Path, prefix: Path, timeout: float) -> int:
        """Run the installer of the env of `python` under this lock; its exit code."""
        self.pass_on()
        assert self.fd is not None
        return subprocess.run(installer_argv(python, prefix), pass_fds=(self.fd,), timeout=timeout).returncode


def installer_argv(python: Path, prefix: Path, argv: Sequence[str] = ()) -> List[str]:
    """`barehub install` of the env `python` belongs to, for `prefix`."""
    return [str(python), "-m", "barehub", "install", "--prefix", str(prefix), *argv]
