"""The offline wheelhouse a site builds with bootstrap.py --make-wheelhouse; downloads are cached."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"  # user servers cannot exec a python under /root (0700)
CACHE = Path(os.environ.get("BAREHUB_TEST_CACHE", Path.home() / ".cache" / "barehub-tests"))


def build_wheelhouse(repo: Path, cache: Path = CACHE) -> Path:
    """bootstrap.py --make-wheelhouse, as an air-gapped site would run it; always this checkout's barehub."""
    lock_hash = hashlib.sha256((repo / "requirements.lock").read_bytes()).hexdigest()[:16]
    target = cache / f"wheelhouse-{lock_hash}"
    for old in target.glob("barehub-*.whl"):
        old.unlink()
    proc = subprocess.run([SYSTEM_PYTHON, str(repo / "bootstrap.py"), "--make-wheelhouse", str(target)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


if __name__ == "__main__":  # tests/run: built once, for the test processes it starts (BAREHUB_WHEELHOUSE)
    print(build_wheelhouse(Path(__file__).resolve().parents[1]))
