"""The local-limits drop-in: a spawn page choice becomes the server unit's limits."""
from types import SimpleNamespace

import pytest

from barehub.package_files import shipped
from barehub.validation import load_config


@pytest.fixture
def config(prefix):
    (prefix.config_d / "30-local-limits.py").write_text((shipped("jupyterhub_config.d") / "local-limits.py").read_text())
    return load_config(prefix)


def spawn(config, formdata=None):
    """What the hub does with a spawn: the form's options, then the pre-spawn hook on the spawner."""
    options = config.Spawner.options_from_form(formdata) if formdata is not None else {}
    spawner = SimpleNamespace(user_options=options, mem_limit=None, cpu_limit=None)
    config.Spawner.pre_spawn_hook(spawner)
    return spawner


def test_a_profile_chosen_on_the_spawn_page_sets_the_limits(config):
    assert 'name="profile"' in config.Spawner.options_form and "Medium: 2 CPUs, 8 GB" in config.Spawner.options_form
    medium = spawn(config, {"profile": ["medium"]})
    assert (medium.cpu_limit, medium.mem_limit) == (2.0, "8G")


def test_an_api_spawn_without_a_choice_gets_the_default_profile_named_in_its_options(config):
    spawner = spawn(config)
    assert (spawner.cpu_limit, spawner.mem_limit) == (1.0, "2G")
    assert spawner.user_options == {"profile": "small"}  # the culler's per-profile limits go by it


def test_an_unknown_profile_is_refused_by_name(config):
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        spawn(config, {"profile": ["huge"]})


def test_the_server_units_keep_barehubs_properties_and_get_no_swap(config):
    properties = config.SystemdSpawner.unit_extra_properties
    assert properties["MemorySwapMax"] == "0"
    assert properties["RuntimeDirectory"] == "jupyterhub/users/{USERID} jupyterhub-apps/{USERID}"  # from the base config
    assert config.JupyterHub.spawner_class == "barehub.local_spawner.LocalSpawner"
