"""Root never follows what a less privileged user can write: links planted in the hub user's state/ or the
proxy user's acme/, and records that decide users and executables. Runs as root (as the tests do)."""
from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from barehub import layout, secret_files
from barehub.fsutil import FileSpec, atomic_write, chown_contents
from barehub.settings import Settings
from barehub.base.records import legacy_record
from barehub.migrations import adopt_legacy_records, take_dynamic_dir_back
from barehub.base.errors import BarehubError

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


def test_existing_secrets_are_kept_and_follow_a_root_hub_to_its_new_hub_user(prefix):
    before = prefix.cookie_secret.read_text()
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    layout.make_directories(prefix, Settings(hub_user="nobody", proxy_user="daemon"), previous_hub_user="root")
    assert secret_files.ensure_all(prefix, "nobody") == []
    st = prefix.cookie_secret.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode), prefix.cookie_secret.read_text()) == (NOBODY.pw_uid, 0o600, before)


@pytest.mark.parametrize("name", ["jupyterhub_cookie_secret", "jupyterhub.sqlite"])
def test_a_root_file_the_hub_user_put_at_a_secrets_name_is_never_given_to_her(prefix, name):
    """She could move root's key there (from the old proxy/dynamic/, or by a hard link): an install run of her
    --hub-user install refuses it, naming it, instead of making it "her" secret."""
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    for secret in prefix.state.iterdir():
        os.chown(secret, NOBODY.pw_uid, NOBODY.pw_gid)
    (prefix.state / name).write_text("-----BEGIN PRIVATE KEY----- root's")
    os.chown(prefix.state / name, 0, 0)
    layout.make_directories(prefix, Settings(hub_user="nobody", proxy_user="daemon"), previous_hub_user="nobody")
    with pytest.raises(BarehubError, match=f"{name} belongs to uid 0, not to nobody"):
        secret_files.ensure_all(prefix, "nobody")
        secret_files.ensure_private_file(prefix.db_file, "nobody")
    assert (prefix.state / name).stat().st_uid == 0


def test_a_rendered_file_replaces_a_planted_link_instead_of_writing_through_it(prefix, victim):
    target = prefix.state / "rendered.toml"
    target.symlink_to(victim)
    assert atomic_write(target, FileSpec("text\n", 0o640))
    assert not target.is_symlink() and target.read_text() == "text\n"
    assert unchanged(victim)


def test_only_the_previous_hub_users_files_follow_a_new_hub_user_never_roots_nor_links(tmp_path, victim):
    daemon = pwd.getpwnam("daemon")  # the hub user before the change
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "jupyterhub.sqlite").write_text("")
    os.chown(directory / "jupyterhub.sqlite", daemon.pw_uid, daemon.pw_gid)
    (directory / "renamed-by-the-hub-user").write_text("KEY")  # root's file, under a name she chose
    (directory / "link").symlink_to(victim)
    os.link(victim, directory / "hard")
    given = chown_contents(directory, NOBODY.pw_uid, NOBODY.pw_gid, from_uids={daemon.pw_uid})
    assert given == [directory / "jupyterhub.sqlite"]
    assert (directory / "jupyterhub.sqlite").stat().st_uid == NOBODY.pw_uid
    assert (directory / "renamed-by-the-hub-user").stat().st_uid == 0
    assert unchanged(victim)


def test_no_root_file_lies_in_a_directory_another_user_owns(prefix):
    """The promise as a property of the layout: every file root renders (tls.toml with the site's key,
    barehub.toml, traefik.toml, the records, the units) is in a directory only root can write."""
    from barehub.commands.install import render_all

    settings = Settings(hub_user="nobody", proxy_user="daemon")
    dirs = layout.directories(prefix, settings)
    rendered = {path: spec for files in render_all(prefix, settings, ("cert", "key")).values()
                for path, spec in files.items()}
    for path, spec in rendered.items():
        if spec.owner == "root" and path.parent in dirs:
            assert dirs[path.parent].owner == "root" and not dirs[path.parent].owns_contents, path
    assert dirs[prefix.traefik_tls.parent].owner == "root"
    assert dirs[prefix.traefik_rules.parent].owner == "nobody"  # the hub's routes, in a directory of their own


def test_records_from_before_records_existed_are_adopted_trusting_only_what_root_set(prefix):
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)  # a --hub-user install: state/ is the hub user's
    legacy_settings = legacy_record(prefix, prefix.settings_file)
    legacy_release = legacy_record(prefix, prefix.release_file)
    os.rmdir(prefix.records)
    legacy_settings.write_text(json.dumps({"hub_user": "root", "http_port": 8000}))  # planted by the hub user
    legacy_release.write_text(json.dumps({"version": "2026.10.0", "env": "../../tmp/evil"}))
    assert adopt_legacy_records(prefix, {}) == ["install.json", "release.json"]
    settings = json.loads(prefix.settings_file.read_text())
    assert settings == {"hub_user": "nobody", "http_port": 8000}
    assert "env" not in json.loads(prefix.release_file.read_text())
    st = prefix.settings_file.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o644)
    assert not legacy_settings.exists() and not legacy_release.exists()
    assert adopt_legacy_records(prefix, {}) == []  # once


def test_a_legacy_record_that_is_a_link_is_not_adopted(prefix, victim):
    legacy_record(prefix, prefix.settings_file).symlink_to(victim)
    assert adopt_legacy_records(prefix, {}) == []
    assert not prefix.settings_file.exists()


def test_legacy_file_and_trust_settings_of_the_hub_user_are_not_taken_but_asked_for_again(prefix, tmp_path):
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    os.rmdir(prefix.records)
    legacy = legacy_record(prefix, prefix.settings_file)
    planted = {"http_port": 8000, "tls_cert": "/etc/ssl/other.pem", "tls_key": "/etc/ssl/private/other.key",
               "trusted_proxies": ["0.0.0.0/0"], "hub_sudo": True}
    legacy.write_text(json.dumps(planted))
    with pytest.raises(BarehubError) as refused:
        adopt_legacy_records(prefix, {})
    for name, flag in (("tls_key", "--tls-key"), ("trusted_proxies", "--trusted-proxy"), ("hub_sudo", "--hub-sudo")):
        assert name in refused.value.message and flag in refused.value.message
    assert legacy.exists() and not prefix.settings_file.exists()  # nothing changed
    flags = {"tls_cert": "/etc/ssl/hub.pem", "tls_key": "/etc/ssl/hub.key", "trusted_proxies": ["10.0.0.1"],
             "hub_sudo": "yes", "http_port": None}
    assert adopt_legacy_records(prefix, flags) == ["install.json"]
    assert json.loads(prefix.settings_file.read_text()) == {"hub_user": "nobody", "http_port": 8000}


def old_layout(tmp_path, hub: pwd.struct_passwd):
    """proxy/dynamic/ as releases before routes/ left it with --hub-user: hers, with root's tls.toml in it."""
    from barehub.base.paths import Paths

    paths = Paths.from_prefix(tmp_path / "hub")
    paths.traefik_dynamic_dir.mkdir(parents=True)
    os.chown(paths.traefik_dynamic_dir, hub.pw_uid, hub.pw_gid)
    for name, owner in (("tls.toml", 0), ("barehub.toml", 0), ("rules.yaml", hub.pw_uid)):
        (paths.traefik_dynamic_dir / name).write_text(f"{name} of uid {owner}")
        os.chown(paths.traefik_dynamic_dir / name, owner, 0)
    (paths.traefik_dynamic_dir / ".staging").mkdir()
    return paths


@pytest.mark.parametrize("new_name", ["rules.toml", "routes", "other.toml", "routes/sub/key.toml"])
def test_root_files_the_hub_user_renamed_in_the_old_layout_never_become_hers(tmp_path, new_name):
    """With --hub-user, proxy/dynamic/ was hers: she renamed root's tls.toml (the site's key) and the next run
    chowned it to her. Converting that layout, a root file she renamed is neither moved nor given away."""
    paths = old_layout(tmp_path, NOBODY)
    target = paths.traefik_dynamic_dir / new_name
    for directory in reversed([p for p in target.parents if paths.traefik_dynamic_dir in p.parents]):
        directory.mkdir()
        os.chown(directory, NOBODY.pw_uid, NOBODY.pw_gid)
    os.rename(paths.traefik_dynamic_dir / "tls.toml", target)
    settings = Settings(hub_user="nobody", proxy_user="daemon")
    take_dynamic_dir_back(paths, settings, "nobody")
    layout.make_directories(paths, settings, "nobody")
    st = paths.traefik_dynamic_dir.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o751)
    assert sorted(p.name for p in paths.traefik_dynamic_dir.iterdir()) == ["barehub.toml", "routes"]
    routes = paths.traefik_routes_dir
    assert (routes.stat().st_uid, stat.S_IMODE(routes.stat().st_mode)) == (NOBODY.pw_uid, 0o2750)
    assert [p.name for p in routes.iterdir() if p.is_file()] == ["rules.yaml"]  # the hub's routes, moved
    assert [p for p in routes.rglob("*") if p.lstat().st_uid == 0] == []  # no root file in her directory
    assert (routes / "rules.yaml").read_text() == f"rules.yaml of uid {NOBODY.pw_uid}"
    for root, dirs, files in os.walk(paths.prefix):
        for name in files:
            assert "tls.toml of uid 0" not in (Path(root) / name).read_text() or os.stat(Path(root) / name).st_uid == 0


def test_a_link_planted_as_routes_in_the_old_layout_is_removed_not_followed(tmp_path, victim):
    paths = old_layout(tmp_path, NOBODY)
    elsewhere = tmp_path / "etc"
    elsewhere.mkdir()
    elsewhere.chmod(0o755)
    paths.traefik_routes_dir.symlink_to(elsewhere)
    settings = Settings(hub_user="nobody", proxy_user="daemon")
    take_dynamic_dir_back(paths, settings, "nobody")
    layout.make_directories(paths, settings, "nobody")
    st = elsewhere.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o755) and list(elsewhere.iterdir()) == []
    assert not paths.traefik_routes_dir.is_symlink() and paths.traefik_routes_dir.stat().st_uid == NOBODY.pw_uid


def test_a_converted_layout_is_left_as_it_is(tmp_path):
    paths = old_layout(tmp_path, NOBODY)
    settings = Settings(hub_user="nobody", proxy_user="daemon")
    take_dynamic_dir_back(paths, settings, "nobody")
    layout.make_directories(paths, settings, "nobody")
    (paths.traefik_dynamic_dir / ".tls.toml.tmp").write_text("root's own, interrupted")
    take_dynamic_dir_back(paths, settings, "nobody")
    layout.make_directories(paths, settings, "nobody")
    assert (paths.traefik_dynamic_dir / ".tls.toml.tmp").exists()


def test_a_legacy_release_record_of_the_hub_user_takes_its_version_from_the_env_root_built(prefix):
    """Its version decides whether an upgrade backs up and migrates the database: the hub user could have
    written the release the upgrade goes to, and the hub would then start on the old schema."""
    os.chown(prefix.state, NOBODY.pw_uid, NOBODY.pw_gid)
    os.rmdir(prefix.records)
    info = prefix.envs / "2026.10.0" / "lib" / "python3.11" / "site-packages" / "barehub-2026.10.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: barehub\nVersion: 2026.10.0\n")
    legacy_record(prefix, prefix.release_file).write_text(json.dumps({"version": "2026.12.0", "env": "envs/2026.10.0"}))
    assert adopt_legacy_records(prefix, {}) == ["release.json"]
    assert json.loads(prefix.release_file.read_text()) == {"version": "2026.10.0", "env": "envs/2026.10.0"}
