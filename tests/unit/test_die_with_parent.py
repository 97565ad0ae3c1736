import subprocess
import sys
import time


def test_child_dies_when_its_parent_is_killed(tmp_path):
    pidfile = tmp_path / "pid"
    # parent: starts the guarded child, then gets killed; the child must not outlive it
    parent = subprocess.Popen([sys.executable, "-c", f"""
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "barehub.die_with_parent", "sleep", "60"])
open({str(pidfile)!r}, "w").write(str(child.pid))
time.sleep(60)
"""])
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = int(pidfile.read_text())
    while open(f"/proc/{child}/comm").read().strip() != "sleep":  # guarded and exec'd
        assert time.monotonic() < deadline
        time.sleep(0.05)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = open(f"/proc/{child}/stat").read().split(")")[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":  # dead, waiting to be reaped by init
            return
        time.sleep(0.05)
    raise AssertionError("the child outlived its parent")
