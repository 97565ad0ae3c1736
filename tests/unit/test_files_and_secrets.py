import os
import stat

from barehub.fsutil import FileSpec, atomic_write
from barehub.secret_files import ensure_all, ensure_private_file, ensure_secret


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_sets_mode_reports_change_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "f.toml"
    assert atomic_write(target, FileSpec("a\n", 0o640)) is True
    assert target.read_text() == "a\n" and mode(target) == 0o640
    assert atomic_write(target, FileSpec("a\n", 0o640)) is False  # converged: nothing to do
    assert atomic_write(target, FileSpec("a\n", 0o600)) is True  # the mode alone counts too
    assert os.listdir(tmp_path) == ["f.toml"]


def test_secret_is_generated_once_0600_and_kept(tmp_path):
    path = tmp_path / "secret"
    assert ensure_secret(path) is True
    value = path.read_text()
    assert len(value.strip()) == 64 and mode(path) == 0o600
    assert ensure_secret(path) is False and path.read_text() == value


def test_a_loosened_secret_is_tightened_not_replaced(tmp_path):
    path = tmp_path / "secret"
    ensure_secret(path)
    value = path.read_text()
    path.chmod(0o644)
    ensure_secret(path)
    assert mode(path) == 0o600 and path.read_text() == value


def test_all_secrets_are_distinct(prefix):
    secrets = (prefix.cookie_secret, prefix.traefik_api_password, prefix.barehub_api_token, prefix.crypt_key)
    for p in secrets:
        p.unlink()
    assert len(ensure_all(prefix, "root")) == 4
    assert len({p.read_text() for p in secrets}) == 4
    assert ensure_all(prefix, "root") == []


def test_database_file_is_private(tmp_path):
    db = tmp_path / "jupyterhub.sqlite"
    db.write_bytes(b"data")
    db.chmod(0o644)
    ensure_private_file(db, "root")
    assert mode(db) == 0o600 and db.read_bytes() == b"data"
