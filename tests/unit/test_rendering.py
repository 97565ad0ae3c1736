"""Rendered files, tested as text: units, traefik's static config, settings."""
import tomllib
from pathlib import Path

from barehub.base.paths import Paths
from barehub.package_files import base_config_file
from barehub.proxy_config import render_proxy_config
from barehub.settings import Settings, load_settings, render_settings
from barehub.units import render_units

PATHS = Paths.from_prefix("/srv/hub")
SETTINGS = Settings(http_port=8000, proxy_api_port=9099, hub_user="jhub")


def unit_text(name: str, settings: Settings = SETTINGS) -> str:
    files = render_units(PATHS, settings)
    return next(spec.text for path, spec in files.items() if path.name == name)


def directives(text: str) -> list[tuple[str, str]]:
    return [tuple(line.split("=", 1)) for line in text.splitlines() if "=" in line and not line.startswith("#")]


def test_hub_unit():
    text = unit_text("jupyterhub.service")
    d = directives(text)
    assert ("User", "jhub") in d
    assert ("ExecStart", f"/srv/hub/conda/bin/python -P -m barehub.hub --config {base_config_file()}") in d
    assert ("Environment", "BAREHUB_PREFIX=/srv/hub") in d
    # reload = barehub reload (check, restart in place, wait until it serves), as root
    reloads = [v for k, v in d if k == "ExecReload"]
    assert reloads == ["+/srv/hub/conda/bin/barehub reload --prefix /srv/hub"]
    assert ("Restart", "always") in d
    # user servers are their own units: stopping the hub ends its whole cgroup, and the hub is sandboxed
    assert "KillMode" not in dict(d)
    assert "{" not in text  # every template field was filled


def test_hub_unit_is_sandboxed_with_privileges_by_hub_user():
    cases = (  # hub settings, then what differs between the three
        (Settings(hub_user="root"), "CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE CAP_DAC_READ_SEARCH", True),
        (Settings(hub_user="jhub"), "", True),  # no capability at all
        (Settings(hub_user="jhub", hub_sudo=True), "CAP_SETUID CAP_SETGID CAP_AUDIT_WRITE CAP_DAC_READ_SEARCH",
         False),  # runs sudo
    )
    for settings, capabilities, filtered in cases:
        d = directives(unit_text("jupyterhub.service", settings))
        for setting in [("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                        ("CapabilityBoundingSet", capabilities),
                        ("RuntimeDirectory", "jupyterhub"), ("RuntimeDirectoryPreserve", "yes")]:
            assert setting in d, (settings, setting)
        # writable: its state and its traefik routes only
        assert [v for k, v in d if k == "ReadWritePaths"] == ["/srv/hub/state /srv/hub/proxy/dynamic/routes"]
        # sudo's setuid bit needs a hub without NoNewPrivileges, which systemd implies for any syscall filter
        assert (("NoNewPrivileges", "yes") in d) == filtered
        assert (("SystemCallFilter", "@system-service") in d) == filtered
        assert ("RemoveIPC", "yes") in d or settings.hub_user == "root"


def test_hub_sudo_is_given_as_yes_or_no():
    assert Settings(hub_user="jhub").with_overrides({"hub_sudo": "yes"}).hub_sudo is True


def test_proxy_unit_is_unprivileged_and_hardened():
    d = directives(unit_text("jupyterhub-proxy.service"))
    assert ("User", "barehub-proxy") in d
    assert ("ExecStart", "/srv/hub/conda/bin/traefik --configFile=/srv/hub/proxy/traefik.toml") in d
    for setting in [("AmbientCapabilities", "CAP_NET_BIND_SERVICE"), ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
                    ("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                    ("NoNewPrivileges", "yes"), ("Restart", "always")]:
        assert setting in d
    assert [v for k, v in d if k == "ReadWritePaths"] == ["/srv/hub/proxy/acme"]  # its only writable place


def test_hub_unit_changes_with_the_settings_the_hub_reads_but_not_with_https():
    hub = lambda settings: render_units(PATHS, settings)[Path("/etc/systemd/system/jupyterhub.service")].text  # noqa
    assert hub(SETTINGS.with_overrides({"acme_domains": ["a.org"], "acme_email": "x@a.org"})) == hub(SETTINGS)
    assert hub(SETTINGS.with_overrides({"hub_port": 9081})) != hub(SETTINGS)


def test_an_upgrade_that_keeps_traefik_keeps_the_proxy_unit_so_traefik_keeps_running(monkeypatch):
    import barehub.units as units

    proxy = lambda **kw: render_units(PATHS, SETTINGS, **kw)[Path("/etc/systemd/system/jupyterhub-proxy.service")].text  # noqa
    before = proxy(traefik_version="3.7.15")
    monkeypatch.setattr(units, "__version__", "2099.1.0")  # another barehub release ...
    assert proxy(traefik_version="3.7.15") == before
    assert proxy(traefik_version="3.8.0") != before  # ... but another traefik binary restarts it


def test_units_change_when_the_base_config_changes(monkeypatch):
    import barehub.units as units

    before = unit_text("jupyterhub.service")
    monkeypatch.setattr(units, "base_config_digest", lambda: "somethingelse")
    assert unit_text("jupyterhub.service") != before


def static(settings) -> dict:
    spec = render_proxy_config(PATHS, settings, "C", "K")[PATHS.traefik_static]
    assert (spec.mode, spec.owner, spec.group) == (0o640, "root", "barehub-proxy")
    return tomllib.loads(spec.text)


def test_traefik_static_config_plain_http():
    config = static(SETTINGS)
    assert config["entryPoints"]["web"] == {"address": ":8000"}
    # the API entrypoint is named "traefik", so traefik adds no default one on :8080
    assert config["entryPoints"]["traefik"] == {"address": "127.0.0.1:9099"}
    assert set(config["entryPoints"]) == {"web", "traefik"}
    assert config["api"] == {"dashboard": False}
    assert config["providers"]["providersThrottleDuration"] == "0s"
    assert config["providers"]["file"] == {"directory": "/srv/hub/proxy/dynamic", "watch": True}
    assert config["global"]["sendAnonymousUsage"] is False
    assert "certificatesResolvers" not in config
    tls = tomllib.loads(render_proxy_config(PATHS, SETTINGS, "CERT-PEM", "KEY-PEM")[PATHS.traefik_tls].text)["tls"]
    # always a default certificate, HTTPS or not: else traefik makes an RSA key at every reload of the routes
    assert tls["stores"]["default"]["defaultCertificate"] == {"certFile": "CERT-PEM", "keyFile": "KEY-PEM"}


def test_traefik_metrics_on_their_own_loopback_entrypoint_without_user_route_labels():
    assert "metrics" not in static(SETTINGS)  # off unless --metrics-port
    config = static(SETTINGS.with_overrides({"metrics_port": 8082}))
    assert config["entryPoints"]["metrics"] == {"address": "127.0.0.1:8082"}
    assert config["metrics"]["prometheus"] == {"entryPoint": "metrics", "addEntryPointsLabels": True,
                                               "addRoutersLabels": False, "addServicesLabels": False}
    assert "metrics" not in static(SETTINGS.with_overrides({"metrics_port": 8082}).with_overrides({"metrics_port": 0}))


ACME = SETTINGS.with_overrides({"acme_domains": ["hub.example.org", "jupyter.example.org"],
                                "acme_email": "admin@example.org", "acme_ca_file": "/etc/site-ca.pem"})


def test_letsencrypt_https_keeps_the_routes_entrypoint_and_redirects_http():
    config = static(ACME)
    web = config["entryPoints"]["web"]
    assert web["address"] == ":443"  # same name as plain HTTP: the hub's routes need no change
    assert web["http"]["tls"] == {"certResolver": "barehub", "domains": [
        {"main": "hub.example.org", "sans": ["jupyter.example.org"]}]}
    assert config["entryPoints"]["web-redirect"] == {"address": ":8000", "http": {"redirections": {
        "entryPoint": {"to": "web", "scheme": "https", "permanent": True}}}}
    assert config["certificatesResolvers"]["barehub"]["acme"] == {
        "email": "admin@example.org", "storage": "/srv/hub/proxy/acme/acme.json", "tlsChallenge": {},
        "caServer": "https://acme-v02.api.letsencrypt.org/directory", "caCertificates": ["/etc/site-ca.pem"]}
    assert config["entryPoints"]["traefik"] == {"address": "127.0.0.1:9099"}  # the API stays on loopback


def test_hub_route_retries_while_the_hub_restarts():
    from barehub.traefik_proxy import BarehubTraefikProxy

    retry = tomllib.loads(render_proxy_config(PATHS, SETTINGS, "C", "K")[PATHS.traefik_middlewares].text)
    assert retry["http"]["middlewares"]["hub-retry"]["retry"] == {"attempts": 450, "initialInterval": "100ms"}
    # the fresh-connection transport of earlier releases' hubs, whose routes name it until such a hub stops
    assert retry["http"]["serversTransports"] == {"hub-transport": {"maxIdleConnsPerHost": -1}}
    proxy = BarehubTraefikProxy.__new__(BarehubTraefikProxy)  # no traefik to talk to: only the route text
    proxy._trait_values = {"traefik_entrypoint": "web"}
    hub, _ = BarehubTraefikProxy._dynamic_config_for_route(proxy, "/", "http://127.0.0.1:8081", {"hub": True})
    user, _ = BarehubTraefikProxy._dynamic_config_for_route(proxy, "/user/a/", "http://127.0.0.1:9", {"user": "a"})
    assert [r["middlewares"] for r in hub["http"]["routers"].values()] == [["hub-retry@file"]]
    assert [s["loadBalancer"]["serversTransport"] for s in hub["http"]["services"].values()] == \
        ["hub-keepalive@file"]
    # this hub's connections kept open, closed by traefik after 1 s idle (the stopping hub waits for that): defined
    # with its route, so a rollback's older hub, which rewrites its route, takes it away with it
    assert hub["http"]["serversTransports"] == {
        "hub-keepalive": {"maxIdleConnsPerHost": 200, "forwardingTimeouts": {"idleConnTimeout": "1s"}}}
    assert "serversTransports" not in user["http"]
    assert all("middlewares" not in r for r in user["http"]["routers"].values())


def test_tls_options_are_modern_and_manual_certificates_are_inline():
    manual = SETTINGS.with_overrides({"tls_cert": "/etc/ssl/hub.pem", "tls_key": "/etc/ssl/private/hub.key"})
    files = render_proxy_config(PATHS, manual, "CERT-PEM", "KEY-PEM")
    assert "certificatesResolvers" not in tomllib.loads(files[PATHS.traefik_static].text)
    tls = tomllib.loads(files[PATHS.traefik_tls].text)["tls"]
    assert (files[PATHS.traefik_tls].mode, files[PATHS.traefik_tls].group) == (0o640, "barehub-proxy")
    assert tls["options"]["default"]["minVersion"] == "VersionTLS12"
    assert all("GCM" in suite or "CHACHA20" in suite for suite in tls["options"]["default"]["cipherSuites"])
    assert tls["stores"]["default"]["defaultCertificate"] == {"certFile": "CERT-PEM", "keyFile": "KEY-PEM"}


def test_https_settings_replace_each_other_and_can_be_turned_off():
    assert ACME.https and ACME.public_url == "https://hub.example.org/"
    manual = ACME.with_overrides({"tls_cert": "/c", "tls_key": "/k"})
    assert manual.acme_domains == () and manual.https
    off = manual.with_overrides({"no_https": True})
    assert not off.https and off.public_url == "http://localhost:8000/"
    assert off.acme_email == "admin@example.org"  # kept for turning ACME on again


def test_settings_round_trip_and_overrides(prefix):
    assert load_settings(prefix) == Settings()  # fresh install: defaults
    prefix.settings_file.write_text(render_settings(ACME))
    assert load_settings(prefix) == ACME
    prefix.settings_file.write_text(render_settings(SETTINGS))
    assert load_settings(prefix) == SETTINGS
    assert load_settings(prefix).with_overrides({"http_port": 9000, "hub_user": None}) == \
        Settings(http_port=9000, proxy_api_port=9099, hub_user="jhub")


def test_traefik_behind_a_site_proxy_listens_on_loopback_and_trusts_only_that_proxy():
    entry = static(SETTINGS.with_overrides({"http_address": "127.0.0.1", "trusted_proxies": ["127.0.0.2/32"]}))
    assert entry["entryPoints"]["web"] == {"address": f"127.0.0.1:{SETTINGS.http_port}",
                                           "forwardedHeaders": {"trustedIPs": ["127.0.0.2/32"]}}
    assert static(SETTINGS)["entryPoints"]["web"] == {"address": f":{SETTINGS.http_port}"}


def test_the_usage_sampler_is_a_root_oneshot_on_a_minute_timer():
    service, timer = directives(unit_text("barehub-usage.service")), directives(unit_text("barehub-usage.timer"))
    assert ("Type", "oneshot") in service and "User" not in dict(service)  # root: the ledger is root's
    assert ("ExecStart", "/srv/hub/conda/bin/python -I -m barehub.usage_ledger sample --prefix /srv/hub") in service
    assert ("OnUnitActiveSec", "60") in timer and ("Unit", "barehub-usage.service") in timer
    assert ("WantedBy", "timers.target") in timer
    assert "{" not in unit_text("barehub-usage.service") + unit_text("barehub-usage.timer")
