"""barehub.base: what bootstrap.py and the package share (the lock, the install's own prefix)."""
import subprocess
import sys

import pytest

from barehub.base.errors import BarehubError
from barehub.base.install_lock import InstallLock
from barehub.base.paths import Paths, prefix_of_env


def test_a_second_run_is_refused_naming_the_holder(tmp_path):
    paths = Paths.from_prefix(tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from barehub.base.install_lock import InstallLock\nfrom barehub.base.paths import Paths\n"
        "InstallLock(Paths.from_prefix(%r)).acquire(); print('held', flush=True); time.sleep(30)"
    ) % (sys.path[0], str(tmp_path))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(BarehubError, match=rf"another barehub run is changing {tmp_path}: pid {holder.pid}"):
            InstallLock(paths).acquire()
    finally:
        holder.kill()
        holder.wait()
    InstallLock(paths).acquire().release()  # the kernel dropped the killed holder's lock


def test_the_lock_passes_to_the_installer_across_exec(tmp_path, monkeypatch):
    paths = Paths.from_prefix(tmp_path)
    lock = InstallLock(paths).acquire()
    lock.pass_on()
    try:
        assert InstallLock(paths).acquire().fd == lock.fd  # what `barehub install` does after bootstrap's exec
    finally:
        monkeypatch.delenv(InstallLock.ENV)
        lock.release()


def test_the_cli_finds_the_install_it_belongs_to(tmp_path):
    paths = Paths.from_prefix(tmp_path / "srv" / "hub")
    (paths.envs / "2026.10.0").mkdir(parents=True)
    paths.env.symlink_to("envs/2026.10.0")
    assert prefix_of_env(str(paths.env)) is None  # no install there yet
    paths.records.mkdir()
    paths.settings_file.write_text("{}")
    assert prefix_of_env(str(paths.env)) == paths.prefix
    assert prefix_of_env(str(paths.envs / "2026.10.0")) == paths.prefix
    assert prefix_of_env("/usr") is None
