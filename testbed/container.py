"""A real systemd, booted with systemd-nspawn over the host's /usr (tmpfs root, copy-on-write /etc).

One container per test session; it shares the host's network, so tests use their own ports. A cluster's
nodes are containers booted into network namespaces the test made (`network_namespace`), each with its own
hostname, sharing directories read-write (`shared`: a bind mount standing in for NFS).
"""
from __future__ import annotations

import shlex
import signal
import subprocess
import time
from pathlib import Path


# The Debian image this runs on has PostgreSQL installed and enabled (tests/run disables only what it installs itself),
# and a container copies the host's /etc: its systemd started the host's cluster at boot, on an empty /var, and once
# (the host lane, 2026-12-06) hung the boot on postgresql@15-main for the whole 90 s. Tests that want a PostgreSQL
# run a cluster of their own under another unit name (testbed/postgres.py).
NEVER_AT_BOOT = ("postgresql.service", "postgresql@15-main.service")


class Container:
    def __init__(self, name: str, binds: dict[str, str], log_path: Path, shared: dict[str, str] | None = None,
                 network_namespace: str | None = None, hostname: str | None = None, masked: tuple[str, ...] = ()):
        self.name = name
        self.binds = binds
        self.shared = shared or {}
        self.network_namespace = network_namespace
        self.hostname = hostname
        # units this container's systemd does not start (systemd.mask= on its command line)
        self.masked = tuple(dict.fromkeys((*NEVER_AT_BOOT, *masked)))
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.pid = 0  # the container's systemd (PID 1 inside)

    def boot(self, timeout: float = 90) -> None:
        cmd = ["systemd-nspawn", "-D", "/", "--volatile=yes", "--overlay=/etc::/etc", "--register=no",
               "--keep-unit", "-M", self.name, "--console=passive",
               "--tmpfs=/usr/local/bin"]  # the host's /usr is read-only in here
        cmd += [f"--bind-ro={src}:{dst}" for src, dst in self.binds.items()]
        cmd += [f"--bind={src}:{dst}" for src, dst in self.shared.items()]
        if self.network_namespace:
            cmd += [f"--network-namespace-path={self.network_namespace}"]
        if self.hostname:
            cmd += [f"--hostname={self.hostname}"]
        cmd += ["--boot", "--", "systemd.firstboot=off", *(f"systemd.mask={unit}" for unit in self.masked)]
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}; see {self.log_path}")
            children = subprocess.run(["ps", "--ppid", str(self.proc.pid), "-o", "pid="],
                                      capture_output=True, text=True).stdout.split()
            if children:
                self.pid = int(children[0])
                state = self.run("systemctl is-system-running", check=False, timeout=10).stdout.strip()
                if state in ("running", "degraded"):
                    if self.hostname:  # the container's systemd set the machine's, from the shared /etc/hostname
                        self.run(f"hostname {self.hostname}")
                    self.make_resource_controllers_writable()
                    return
            time.sleep(0.5)
        jobs, console = self.boot_jobs(), self.console_tail()
        self.stop()  # a container that did not boot is not left running: no fixture will stop it
        raise RuntimeError(f"container {self.name} did not boot within {timeout} s; what it waits for:\n"
                           f"{jobs}\nthe end of its console ({self.log_path}):\n{console}")

    def boot_jobs(self) -> str:
        """The jobs a booting systemd still runs (what `is-system-running` waits for), said in the error: the console
        log lives in pytest's temporary directory, which a later pytest run removes."""
        if not self.pid:
            return "(no systemd started)"
        try:
            return self.run("systemctl list-jobs --no-pager; systemctl --failed --no-pager", check=False,
                            timeout=20).stdout.strip()
        except subprocess.TimeoutExpired:
            return "(systemctl did not answer within 20 s)"

    def console_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as e:
            return f"({e})"

    def make_resource_controllers_writable(self) -> None:
        """Give the container's systemd the cgroup controllers a booted host's systemd has.

        This machine's kernel runs cgroup v1, where systemd-nspawn mounts the memory, cpu and pids
        hierarchies read-only inside the container: MemoryMax=/CPUQuota= would be accepted and silently not
        applied (measured: a unit with MemoryMax=100M allocated 400 MB). Remounted writable and with systemd
        re-executed, the container's systemd enforces them (the same unit is then killed by the OOM killer),
        in cgroups that live inside this test process's own cgroup.
        """
        for controller in ("memory", "cpu,cpuacct", "cpu", "cpuacct", "pids"):
            path = f"/sys/fs/cgroup/{controller}"
            self.run(f"test -d {path} && ! test -L {path} || exit 0; mount -o remount,rw {path} 2>/dev/null "
                     f"|| mount -o remount,bind,rw {path}", check=False)
        self.run("systemctl daemon-reexec")

    def run(self, command: str | list[str], check: bool = True, timeout: float = 120,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the container (all namespaces of its PID 1)."""
        argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
        proc = subprocess.run(["nsenter", "-t", str(self.pid), "-a", *argv], capture_output=True, text=True,
                              timeout=timeout, input=input, env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                                                 "LANG": "C.UTF-8"})
        if check and proc.returncode != 0:
            raise AssertionError(f"in container: {command if isinstance(command, str) else shlex.join(argv)} "
                                 f"exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def main_pid(self, unit: str) -> int:
        return int(self.run(f"systemctl show --property=MainPID --value {unit}").stdout.strip() or 0)

    def stop(self, timeout: float = 30) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)  # nspawn asks the container's systemd to power off
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
