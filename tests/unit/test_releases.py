"""Release records, backups and restores, on a real SQLite database."""
import sqlite3
import stat

import pytest

from barehub import releases
from barehub.base.errors import BarehubError


def make_db(path, rows):
    db = sqlite3.connect(path)
    db.execute("create table if not exists users (name text)")
    db.execute("delete from users")
    db.executemany("insert into users values (?)", [(r,) for r in rows])
    db.commit()
    db.close()


def names(path):
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("select name from users order by name")]
    finally:
        db.close()


def test_backup_then_restore_brings_the_database_and_records_back(prefix):
    make_db(prefix.db_file, ["alice", "bob"])
    prefix.db_file.chmod(0o600)
    prefix.settings_file.write_text('{"http_port": 80}\n')
    releases.write_release(prefix, releases.Release("2026.10.0", "envs/2026.10.0"))

    backup = releases.backup(prefix, releases.read_release(prefix, prefix.release_file))
    assert backup.parent == prefix.backups and backup.name.endswith("-from-2026.10.0")
    assert stat.S_IMODE(prefix.backups.stat().st_mode) == 0o700
    assert stat.S_IMODE((backup / "jupyterhub.sqlite").stat().st_mode) == 0o600

    # the upgrade changes things ...
    make_db(prefix.db_file, ["carol"])
    releases.write_release(prefix, releases.Release("2026.10.1", "envs/2026.10.1"))
    prefix.settings_file.write_text('{"http_port": 8000}\n')

    # ... and the rollback restores them
    assert releases.list_backups(prefix) == [backup]
    assert releases.restore(prefix, backup) == releases.Release("2026.10.0", "envs/2026.10.0")
    assert names(prefix.db_file) == ["alice", "bob"]
    assert stat.S_IMODE(prefix.db_file.stat().st_mode) == 0o600
    assert releases.read_release(prefix, prefix.release_file).version == "2026.10.0"
    assert prefix.settings_file.read_text() == '{"http_port": 80}\n'


def test_backups_are_kept_and_listed_oldest_first(prefix, monkeypatch):
    make_db(prefix.db_file, ["alice"])
    release = releases.Release("2026.10.0", "envs/2026.10.0")
    releases.write_release(prefix, release)
    stamps = iter(["20261001T000000Z", "20261101T000000Z"])
    monkeypatch.setattr(releases.time, "strftime", lambda *a: next(stamps))
    first = releases.backup(prefix, release)
    second = releases.backup(prefix, release)
    assert releases.list_backups(prefix) == [first, second]


@pytest.mark.parametrize("record", ['{"version": "2026.10.0", "env": "/tmp/evil"}',
                                    '{"version": "2026.10.0", "env": "envs/../../tmp/evil"}',
                                    '{"version": "2026.10.0"}', "not json", '["a list"]'])
def test_a_malformed_or_foreign_release_record_is_refused(prefix, record):
    backup = prefix.backups / "20261101T000000Z-from-2026.10.0"
    backup.mkdir(parents=True)
    (backup / prefix.release_file.name).write_text(record)
    assert releases.read_release(prefix, backup / prefix.release_file.name) is None
    with pytest.raises(BarehubError, match="has no valid release record"):
        releases.restore(prefix, backup)
