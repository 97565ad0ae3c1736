"""Root never follows what a less privileged user can write: links planted in the hub user's state/ or the
proxy user's acme/, and records that decide users and executables. Runs as root (as the tests do)."""
from __future__ import annotations

import json
import os
import pwd
import stat

import pytest

from barehub import layout, secret_files
from barehub.fsutil import FileSpec, atomic_write, chown_contents
from barehub.settings import Settings
from barehub.releases import adopt_legacy_records
from barehub.shared import BarehubError

NOBODY = pwd.getpwnam("nobody")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@pytest.fixture
def victim(tmp_path):
    """A file outside the prefix that only root may change (the stand-in for /etc/shadow)."""
    path = tmp_path / "shadow"
    path.write_text("root:$6$secret:19000:0:99999:7:::\n")
    path.chmod(0o640)
    return path


def unchanged(victim) -> bool:
    st = victim.stat()
    return (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, 0, 0o640) and "secret" in victim.read_text()


@pytest.mark.parametrize("plant", ["symlink", "hardlink"])
def test_a_link_planted_as_the_database_is_refused_and_its_target_untouched(prefix, victim, plant):
    getattr(os, "symlink" if plant == "symlink" else "link")(victim, prefix.db_file)
    with pytest.raises(BarehubError, match="jupyterhub.sqlite is a (symbolic|hard) link"):
        secret_files.ensure_private_file(prefix.db_file, "nobody")
    assert unchanged(victim)


def test_a_link_planted_as_a_secret_is_neither_followed_nor_read(prefix, victim):
    prefix.cookie_secret.unlink()
    prefix.cookie_secret.symlink_to(victim)
    with pytest.raises(BarehubError, match="is a symbolic link"):
        secret_files.ensure_all(prefix, "nobody")
    with pytest.raises(BarehubError, match="is a symbolic link"):  # `barehub status` would send it as a token
        secret_files.read_secret(prefix.cookie_secret)
    assert unchanged(victim)


def test_existing_secrets_are_kept_and_handed_to_the_hub_user_on_the_open_file(prefix):
    before = prefix.cookie_secret.read_text()
    assert secret_files.ensure_all(prefix, "nobody") == []
    st = prefix.cookie_secret.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), prefix.cookie_secret.read_text()) == (NOBODY.pw_uid, 0o600, before)


def test_a_rendered_file_replaces_a_planted_link_instead_of_writing_through_it(prefix, victim):
    target = prefix.state / "rendered.toml"
    target.symlink_to(victim)
    assert atomic_write(target, FileSpec("text\n", 0o640))
    assert not target.is_symlink() and target.read_text() == "text\n"
    assert unchanged(victim)


def test_the_owners_files_follow_it_but_links_and_roots_own_files_do_not(tmp_path, victim):
    directory = tmp_path / "dynamic"
    directory.mkdir()
    (directory / "routes.toml").write_text("")
    (directory / "tls.toml").write_text("key")
    (directory / "link").symlink_to(victim)
    os.link(victim, directory / "hard")
    chown_contents(directory, NOBODY.pw_uid, NOBODY.pw_gid, keep=("tls.toml",))
    assert (directory / "routes.toml").stat().st_uid == NOBODY.pw_uid
    assert (directory / "tls.toml").stat().st_uid == 0
    assert unchanged(victim)


def test_tls_toml_is_never_the_hub_users(prefix):
    settings = Settings(hub_user="nobody", proxy_user="nobody")
    spec = layout.directories(prefix, settings)[prefix.traefik_dynamic_dir]
    assert prefix.traefik_tls.name in spec.root_files


def test_records_from_before_records_existed_are_adopted_trusting_only_what_root_set(prefix):
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)  # a --hub-user install: state/ is the hub user's
    legacy_settings = prefix.legacy_record(prefix.settings_file)
    legacy_release = prefix.legacy_record(prefix.release_file)
    os.rmdir(prefix.records)
    legacy_settings.write_text(json.dumps({"hub_user": "root", "http_port": 8000}))  # planted by the hub user
    legacy_release.write_text(json.dumps({"version": "2026.10.0", "env": "../../tmp/evil"}))
    assert adopt_legacy_records(prefix) == ["install.json", "release.json"]
    settings = json.loads(prefix.settings_file.read_text())
    assert settings == {"hub_user": "nobody", "http_port": 8000}
    assert "env" not in json.loads(prefix.release_file.read_text())
    st = prefix.settings_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert not legacy_settings.exists() and not legacy_release.exists()
    assert adopt_legacy_records(prefix) == []  # once


def test_a_legacy_record_that_is_a_link_is_not_adopted(prefix, victim):
    prefix.legacy_record(prefix.settings_file).symlink_to(victim)
    assert adopt_legacy_records(prefix) == []
    assert not prefix.settings_file.exists()


def test_a_link_planted_as_the_routes_staging_directory_is_refused_not_chowned(tmp_path, victim):
    """proxy/dynamic/ is the hub user's: it could put a link where the installer makes .staging/."""
    from barehub.paths import Paths

    paths = Paths.from_prefix(tmp_path / "hub")
    settings = Settings(hub_user="nobody", proxy_user="daemon")  # a group of that name must exist
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    paths.traefik_dynamic_dir.mkdir(parents=True)
    paths.traefik_staging_dir.symlink_to(elsewhere)
    with pytest.raises(BarehubError, match=r"\.staging is a link"):
        layout.make_directories(paths, settings)
    st = elsewhere.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755)
    paths.traefik_staging_dir.unlink()
    layout.make_directories(paths, settings)
    st = paths.traefik_staging_dir.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, 0o2750)
