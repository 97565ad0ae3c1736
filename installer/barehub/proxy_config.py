"""traefik's configuration, rendered from the install settings (pure: settings -> {path: text}).

Entrypoint names never change with HTTPS, so turning it on or off touches only traefik:
  web           where the hub's routes live: plain HTTP, or TLS when HTTPS is on
  web-redirect  only with HTTPS: the HTTP port, redirecting to web
  traefik       the API, loopback only (the name keeps traefik from opening a default one on :8080)
"""
from __future__ import annotations

from pathlib import Path

import toml

from barehub.fsutil import FileSpec
from barehub.base.paths import Paths
from barehub.settings import Settings

RESOLVER = "barehub"
HUB_RETRY = "hub-retry"  # attached to the hub's route by barehub.traefik_proxy
# While the hub restarts (a reload, an upgrade, a crash) its port refuses connections: traefik retries instead
# of answering 502. Measured with traefik 3.7: attempts come ~0.1 s apart (the backoff hardly grows), so 450
# attempts cover ~45 s. A reload leaves the port closed for ~3 s; an upgrade for the old hub's stop, the migration
# and the new hub's start, and a failed one then for the rollback's start of the old hub as well. Measured on 2
# cores (tests/integration/test_upgrade.py), the slowest /hub answer: 8 s through an upgrade, 12 s through one whose
# migration fails, 15 s through one whose new hub cannot start (28 s while the installer waited for 3 of its
# restarts; under a full test run's load that one exceeded 60 s: hub_run.wait_for_start gives up at the first now).
# 150 attempts (~15 s) lost a /hub request to a failed upgrade's rollback.
HUB_RETRY_ATTEMPTS = 450
HUB_RETRY_INITIAL = "100ms"
# traefik retries only while nothing reached the backend. A request on a kept-alive connection that the
# stopping hub then closes is lost (502); a new connection to the stopped hub is refused, and retried.
# Earlier releases gave the hub a fresh loopback connection per request (HUB_TRANSPORT, kept for their
# hubs: each hub names its own transport in its route, so a hub stops the way its route was made for). That cost
# the hub an accept and a handshake per request: a class of 200 made ~2400 connections to it where keep-alive made
# ~1600, and barehub's class came up 1.10-1.13x slower than CHP's (bench/results.md). So connections to the hub are
# kept open now, but never closed under a request: traefik closes one idle for HUB_IDLE_S, and the stopping hub
# answers every request after it stopped listening with "Connection: close" and waits longer than that before it
# closes what is left (barehub.hub.stop_listening_and_drain). That transport is defined beside the hub's route, in
# the rules the hub writes (barehub.traefik_proxy), not here: it comes and goes with a route of a hub that drains
# this way (a rollback's older hub rewrites its route with the transport above).
HUB_TRANSPORT = "hub-transport"
HUB_KEEPALIVE_TRANSPORT = "hub-keepalive"
HUB_IDLE_S = 1


def hub_keepalive_transport() -> dict:
    return {"maxIdleConnsPerHost": 200, "forwardingTimeouts": {"idleConnTimeout": f"{HUB_IDLE_S}s"}}
HEADER = "# Written by barehub from its install settings; re-running the installer rewrites it.\n"
# TLS >= 1.2; for 1.2 only AEAD suites with forward secrecy (TLS 1.3 suites are not configurable)
CIPHER_SUITES = [
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
]


def static_config(paths: Paths, settings: Settings) -> dict:
    entrypoints: dict = {"traefik": {"address": f"127.0.0.1:{settings.proxy_api_port}"}}
    config: dict = {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "log": {"level": "INFO"},
        "entryPoints": entrypoints,
        "api": {"dashboard": False},
        "providers": {"providersThrottleDuration": "0s",
                      "file": {"directory": str(paths.traefik_dynamic_dir), "watch": True}},
    }
    if settings.metrics_port:
        entrypoints["metrics"] = {"address": f"127.0.0.1:{settings.metrics_port}"}
        config["metrics"] = {"prometheus": metrics_config()}
    if not settings.https:
        entrypoints["web"] = public_entrypoint(settings, settings.http_port)
        return config
    tls: dict = {}
    entrypoints["web"] = {**public_entrypoint(settings, settings.https_port), "http": {"tls": tls}}
    entrypoints["web-redirect"] = {**public_entrypoint(settings, settings.http_port), "http": {"redirections": {
        "entryPoint": {"to": "web", "scheme": "https", "permanent": True}}}}
    if settings.acme_domains:
        tls["certResolver"] = RESOLVER
        tls["domains"] = [{"main": settings.acme_domains[0], "sans": list(settings.acme_domains[1:])}]
        acme = {"email": settings.acme_email, "storage": str(paths.acme_storage), "caServer": settings.acme_server,
                "tlsChallenge": {}}
        if settings.acme_ca_file:
            acme["caCertificates"] = [settings.acme_ca_file]
        config["certificatesResolvers"] = {RESOLVER: {"acme": acme}}
    return config


def metrics_config() -> dict:
    """traefik's Prometheus metrics, on their own loopback entrypoint. Per entrypoint only: router and
    service labels would carry the user routes' names, i.e. who has a server, to any local user."""
    return {"entryPoint": "metrics", "addEntryPointsLabels": True, "addRoutersLabels": False,
            "addServicesLabels": False}


def public_entrypoint(settings: Settings, port: int) -> dict:
    """A public port: on every address, or only on --http-address (127.0.0.1 behind a site's reverse proxy).

    traefik overwrites X-Forwarded-* headers from anyone but the --trusted-proxy addresses, so only the
    site's proxy can tell the hub that a request came in over HTTPS."""
    entrypoint: dict = {"address": f"{settings.http_address}:{port}"}
    if settings.trusted_proxies:
        entrypoint["forwardedHeaders"] = {"trustedIPs": list(settings.trusted_proxies)}
    return entrypoint


def tls_config(cert_pem: str, key_pem: str) -> dict:
    """Dynamic TLS config: modern options, and the default certificate inline (traefik accepts PEM content
    in place of a path, so it needs no access to where the site keeps its key).

    The default certificate is the site's own (--tls-cert), else barehub's self-signed one
    (certificates.default_certificate). Always set, with or without HTTPS: without one, traefik makes a
    fresh RSA-2048 key at every reload of its rules (~100 ms of each route change, measured at 1000 routes).
    Clients see the self-signed one only where no real certificate applies: ACME certificates are chosen
    by the name the client asks for."""
    return {"tls": {"options": {"default": {"minVersion": "VersionTLS12", "cipherSuites": CIPHER_SUITES,
                                            "sniStrict": False}},
                    "stores": {"default": {"defaultCertificate": {"certFile": cert_pem, "keyFile": key_pem}}}}}


def middlewares_config() -> dict:
    return {"http": {"middlewares": {HUB_RETRY: {"retry": {"attempts": HUB_RETRY_ATTEMPTS,
                                                           "initialInterval": HUB_RETRY_INITIAL}}},
                     "serversTransports": {HUB_TRANSPORT: {"maxIdleConnsPerHost": -1}}}}


def render_proxy_config(paths: Paths, settings: Settings, cert_pem: str, key_pem: str) -> dict[Path, FileSpec]:
    readable_by_proxy = dict(mode=0o640, owner="root", group=settings.proxy_user)
    files = {paths.traefik_static: FileSpec(HEADER + toml.dumps(static_config(paths, settings)), **readable_by_proxy),
             paths.traefik_middlewares: FileSpec(HEADER + toml.dumps(middlewares_config()), **readable_by_proxy)}
    files[paths.traefik_tls] = FileSpec(HEADER + toml.dumps(tls_config(cert_pem, key_pem)), **readable_by_proxy)
    return files
