"""barehub.migrations: the records and layout of each older install, brought to the current format once."""
import json
import os

from barehub import __version__, migrations
from barehub.base.paths import Paths
from barehub.base.records import FORMAT, legacy_record
from barehub.settings import Settings, load_settings, render_settings


def install(tmp_path, settings: dict | None = None, release: dict | None = None, where: str = "records") -> Paths:
    paths = Paths.from_prefix(tmp_path / "hub")
    for directory in (paths.records, paths.state, paths.envs):
        directory.mkdir(parents=True, exist_ok=True)
    for record, data in ((paths.settings_file, settings), (paths.release_file, release)):
        if data is not None:
            (record if where == "records" else legacy_record(paths, record)).write_text(json.dumps(data))
    return paths


def record(path) -> dict:
    return json.loads(path.read_text())


def test_a_hub_user_install_from_before_hub_sudo_keeps_running_sudo(tmp_path):
    paths = install(tmp_path, {"hub_user": "jhub", "http_port": 8000})  # format 1
    migrations.convert_older_install(paths, {})
    assert record(paths.settings_file) == {"hub_user": "jhub", "http_port": 8000, "hub_sudo": True, "format": FORMAT}
    assert load_settings(paths).hub_sudo is True


def test_a_root_hub_or_a_choice_made_by_this_release_is_kept(tmp_path):
    paths = install(tmp_path, {"http_port": 8000})
    migrations.convert_older_install(paths, {})
    assert record(paths.settings_file) == {"http_port": 8000, "format": FORMAT}
    assert load_settings(paths).hub_sudo is False
    paths.settings_file.write_text(render_settings(Settings(hub_user="jhub")))  # chosen by this release: no
    migrations.convert_older_install(paths, {})
    assert load_settings(paths).hub_sudo is False


def test_records_from_before_records_existed_reach_the_current_format(tmp_path):
    paths = install(tmp_path, {"http_port": 8000}, {"version": "2026.10.0", "env": "envs/2026.10.0"}, where="state")
    migrations.convert_older_install(paths, {})  # format 0 -> 1 -> 2
    assert record(paths.settings_file) == {"http_port": 8000, "format": FORMAT}
    assert record(paths.release_file) == {"version": "2026.10.0", "env": "envs/2026.10.0", "format": FORMAT}
    assert not legacy_record(paths, paths.settings_file).exists()


def test_a_release_record_gets_the_format_and_keeps_what_it_says(tmp_path):
    paths = install(tmp_path, release={"version": __version__, "env": f"envs/{__version__}"})
    migrations.convert_older_install(paths, {})
    assert record(paths.release_file) == {"version": __version__, "env": f"envs/{__version__}", "format": FORMAT}


def test_an_env_from_before_envs_becomes_one_of_them(tmp_path):
    paths = install(tmp_path)
    (paths.env / "bin").mkdir(parents=True)
    migrations.convert_older_install(paths, {})
    assert paths.env.is_symlink() and paths.env.resolve() == paths.env_of("unversioned")
    assert (paths.env_of("unversioned") / "bin").is_dir()


def test_the_current_env_goes_back_to_the_running_release_an_older_bootstrap_switched_early(tmp_path):
    paths = install(tmp_path, release={"version": "2026.10.0", "env": "envs/2026.10.0"})
    for release in ("2026.10.0", __version__):
        paths.env_of(release).mkdir()
    paths.env.symlink_to(f"envs/{__version__}")
    migrations.convert_older_install(paths, {})
    assert paths.env.resolve() == paths.env_of("2026.10.0")


def test_a_migrated_install_is_left_as_it_is(tmp_path):
    paths = install(tmp_path, {"hub_user": "jhub"}, {"version": __version__, "env": f"envs/{__version__}"})
    migrations.convert_older_install(paths, {})
    before = {path: (path.read_text(), os.stat(path).st_ino) for path in (paths.settings_file, paths.release_file)}
    migrations.convert_older_install(paths, {})
    assert {path: (path.read_text(), os.stat(path).st_ino) for path in before} == before


def test_a_hub_users_release_record_gives_root_its_version_and_env_and_nothing_else(tmp_path):
    """state/ was the hub user's: a format she wrote must not decide which conversions run, nor break them."""
    paths = install(tmp_path, release={"version": "2026.10.0", "env": "envs/2026.10.0", "format": "zz",
                                       "extra": ["anything"]}, where="state")
    os.chown(paths.state, 1000, 1000)
    migrations.convert_older_install(paths, {})
    assert record(paths.release_file) == {"version": "2026.10.0", "env": "envs/2026.10.0", "format": FORMAT}


def test_a_damaged_format_field_means_convert_again(tmp_path):
    paths = install(tmp_path, {"hub_user": "jhub", "format": "2"})
    migrations.convert_older_install(paths, {})
    assert record(paths.settings_file) == {"hub_user": "jhub", "hub_sudo": True, "format": FORMAT}
