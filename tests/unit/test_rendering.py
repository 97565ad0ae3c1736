"""Rendered files, tested as text: units, traefik's static config, settings."""
import tomllib

from barehub.paths import Paths, base_config_file
from barehub.proxy_config import render_proxy_config
from barehub.settings import Settings, load_settings, render_settings
from barehub.units import render_units

PATHS = Paths.from_prefix("/srv/hub")
SETTINGS = Settings(http_port=8000, proxy_api_port=9099, hub_user="jhub")


def unit_text(name: str) -> str:
    files = render_units(PATHS, SETTINGS)
    return next(spec.text for path, spec in files.items() if path.name == name)


def directives(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in text.splitlines() if "=" in line and not line.startswith("#")]


def test_hub_unit():
    text = unit_text("jupyterhub.service")
    d = directives(text)
    assert ("User", "jhub") in d
    assert ("ExecStart", f"/srv/hub/conda/bin/jupyterhub --config {base_config_file()}") in d
    assert ("Environment", "BAREHUB_PREFIX=/srv/hub") in d
    # reload = check first, then restart; a failing check stops the sequence
    reloads = [v for k, v in d if k == "ExecReload"]
    assert reloads == ["/srv/hub/conda/bin/barehub check --prefix /srv/hub",
                       "+/bin/systemctl restart --no-block jupyterhub.service"]
    assert ("KillMode", "process") in d and ("Restart", "always") in d
    assert "{" not in text  # every template field was filled


def test_proxy_unit_is_unprivileged_and_hardened():
    d = directives(unit_text("jupyterhub-proxy.service"))
    assert ("User", "barehub-proxy") in d
    assert ("ExecStart", "/srv/hub/conda/bin/traefik --configFile=/srv/hub/proxy/traefik.toml") in d
    for setting in [("AmbientCapabilities", "CAP_NET_BIND_SERVICE"), ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                    ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                    ("NoNewPrivileges", "yes"), ("Restart", "always")]:
        assert setting in d
    assert not any(k == "ReadWritePaths" for k, _ in d)  # traefik only reads


def test_units_change_when_the_base_config_changes(monkeypatch):
    import barehub.units as units

    before = unit_text("jupyterhub.service")
    monkeypatch.setattr(units, "base_config_digest", lambda: "somethingelse")
    assert unit_text("jupyterhub.service") != before


def test_traefik_static_config():
    (path, spec), = render_proxy_config(PATHS, SETTINGS).items()
    assert path == PATHS.traefik_static
    assert (spec.mode, spec.owner, spec.group) == (0o640, "root", "barehub-proxy")
    config = tomllib.loads(spec.text)
    assert config["entryPoints"]["http"]["address"] == ":8000"
    # the API entrypoint is named "traefik", so traefik adds no default one on :8080
    assert config["entryPoints"]["traefik"]["address"] == "127.0.0.1:9099"
    assert config["api"] == {"dashboard": False}
    assert config["providers"]["providersThrottleDuration"] == "0s"
    assert config["providers"]["file"] == {"directory": "/srv/hub/proxy/dynamic", "watch": True}
    assert config["global"]["sendAnonymousUsage"] is False


def test_settings_round_trip_and_overrides(prefix):
    assert load_settings(prefix) == Settings()  # fresh install: defaults
    prefix.settings_file.write_text(render_settings(SETTINGS))
    assert load_settings(prefix) == SETTINGS
    assert load_settings(prefix).with_overrides({"http_port": 9000, "hub_user": None}) == \
        Settings(http_port=9000, proxy_api_port=9099, hub_user="jhub")
