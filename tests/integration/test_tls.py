"""HTTPS: certificates from a real ACME CA (pebble, Let's Encrypt's test CA) and the site's own files.

Runs after the other modules; it starts from a fresh install. pebble validates for real: TLS-ALPN-01
against traefik's HTTPS port, with names resolved by pebble-challtestsrv to 127.0.0.1.
"""
from __future__ import annotations

import json
import socket
import ssl
import time

import pytest
import requests

from tests.integration import pki
from tests.integration.helpers import (BASE_URL, HTTP_PORT, HUB, MEASUREMENTS, PASSWORDS, PREFIX, PROXY, add_local_user,
                                       bootstrap_cmd, resolving_to_loopback, status_code, wait_until)
from tests.integration.hubclient import HubUser

HTTPS_PORT = 28443
DOMAIN = "hub.barehub.test"
PKI = "/etc/barehub-test/tls"
USER, PASSWORD = "frank", PASSWORDS["frank"]


@pytest.fixture(scope="module")
def pebble(container) -> str:
    """pebble + its DNS; returns the path of the CA of pebble's own HTTPS (ACME) endpoint."""
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    ca = pki.make_ca(container, PKI, "pebble-api")
    cert, key = pki.issue(container, PKI, "pebble-api", "pebble-api", ["localhost", "127.0.0.1"])
    config = {"pebble": {"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
                         "certificate": cert, "privateKey": key, "httpPort": HTTP_PORT, "tlsPort": HTTPS_PORT,
                         "ocspResponderURL": "", "externalAccountBindingRequired": False}}
    container.run(f"cat > {PKI}/pebble.json", input=json.dumps(config))
    container.run("systemd-run --unit=test-challtestsrv pebble-challtestsrv -defaultIPv4 127.0.0.1 "
                  "-dns01 127.0.0.1:8053 -http01 '' -https01 '' -tlsalpn01 '' -management 127.0.0.1:8055")
    container.run(f"systemd-run --unit=test-pebble --setenv=PEBBLE_VA_NOSLEEP=1 "
                  f"pebble -config {PKI}/pebble.json -dnsserver 127.0.0.1:8053")
    wait_until(lambda: status_code("https://127.0.0.1:14000/dir", verify=False) == 200, 30)
    add_local_user(container, USER)
    return ca


def pebble_root() -> str:
    return requests.get("https://127.0.0.1:15000/roots/0", verify=False, timeout=10).text


def served(server_name: str | None, cafile: str | None = None) -> dict:
    """The certificate served on the HTTPS port for `server_name`, verified against `cafile` if given."""
    context = ssl.create_default_context(cafile=cafile) if cafile else ssl._create_unverified_context()
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            return {"der": tls.getpeercert(binary_form=True), "version": tls.version(),
                    "verified": tls.getpeercert() if cafile else None}


def https_get(path: str, cafile: str, server_name: str = DOMAIN, headers: dict | None = None) -> requests.Response:
    """GET through traefik's HTTPS port as a client that resolves `server_name` to 127.0.0.1."""
    with resolving_to_loopback(server_name):
        return requests.get(f"https://{server_name}:{HTTPS_PORT}{path}", verify=cafile, timeout=10,
                            allow_redirects=False, headers=headers)


@pytest.fixture(scope="module")
def acme_install(container, pebble, tmp_path_factory):
    start = time.monotonic()
    container.run(bootstrap_cmd("--https-port", str(HTTPS_PORT), "--letsencrypt-domain", DOMAIN,
                                "--letsencrypt-email", "admin@barehub.test",
                                "--acme-server", "https://127.0.0.1:14000/dir", "--acme-ca-file", pebble),
                  timeout=900)
    root = tmp_path_factory.mktemp("pebble") / "root.pem"

    def issued_by_pebble() -> bool:
        root.write_text(pebble_root())
        try:
            served(DOMAIN, cafile=str(root))
            return True
        except (ssl.SSLError, OSError):
            return False

    wait_until(issued_by_pebble, 90, interval=1)
    MEASUREMENTS["HTTPS: install with ACME -> pebble certificate served (s)"] = round(time.monotonic() - start, 1)
    return str(root)


def test_hub_is_served_over_https_with_a_certificate_from_the_acme_ca(acme_install):
    r = https_get("/hub/login", cafile=acme_install)  # verified against pebble's root and the name
    assert r.status_code == 200 and 'name="password"' in r.text
    assert served(DOMAIN)["version"] in ("TLSv1.2", "TLSv1.3")


def test_the_self_signed_default_certificate_is_served_only_where_no_real_one_applies(container, acme_install):
    """traefik has barehub's default certificate (it would make an RSA key at every route change without
    one); a client asking for the ACME name gets pebble's certificate, one asking for nothing gets it."""
    assert subject_cn(served(None)["der"]) == "CN=barehub default certificate (self-signed)"
    assert subject_cn(served("other.barehub.test")["der"]) == "CN=barehub default certificate (self-signed)"
    assert subject_cn(served(DOMAIN, cafile=acme_install)["der"]) != "CN=barehub default certificate (self-signed)"
    assert container.run(f"stat -c '%a %U' {PREFIX}/proxy/default_tls.pem").stdout.split() == ["600", "root"]


def test_http_redirects_to_https(acme_install):
    r = requests.get(f"{BASE_URL}/hub/login", allow_redirects=False, timeout=10)
    assert r.status_code in (301, 308)
    assert r.headers["location"] == f"https://127.0.0.1:{HTTPS_PORT}/hub/login"


def handshake(lowest: ssl.TLSVersion, highest: ssl.TLSVersion) -> str:
    """A TLS handshake with traefik offering only `lowest`..`highest`; returns the version agreed on. The client
    allows every cipher and old version its OpenSSL has (security level 0), so a refusal is the server's."""
    context = ssl._create_unverified_context()
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    context.minimum_version, context.maximum_version = lowest, highest
    with socket.create_connection(("127.0.0.1", HTTPS_PORT), timeout=5) as sock:
        with context.wrap_socket(sock, server_hostname=DOMAIN) as tls:
            return tls.version()


def test_old_tls_versions_are_refused(acme_install):
    assert handshake(ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # this client can connect
    with pytest.raises(ssl.SSLError) as refused:
        handshake(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1)
    # traefik's alert, not a client that could not offer TLS 1.0/1.1 at all
    assert refused.value.reason == "TLSV1_ALERT_PROTOCOL_VERSION", refused.value


def test_acme_storage_is_private_to_the_proxy_user_and_the_api_stays_on_loopback(container, acme_install):
    assert container.run(f"stat -c '%a %U' {PREFIX}/proxy/acme/acme.json").stdout.split() == ["600", "barehub-proxy"]
    listening = container.run("ss -ltnH").stdout
    assert "127.0.0.1:8099" in listening and "*:8099" not in listening and "0.0.0.0:8099" not in listening


def test_status_shows_the_certificate(container, acme_install):
    status = json.loads(container.run(f"barehub status --json --prefix {PREFIX}").stdout)
    cert = status["certificate"]
    assert cert["https"] and cert["source"] == "acme" and "error" not in cert
    assert "Pebble" in cert["issuer"] and cert["expires"]
    assert status["url"] == f"https://{DOMAIN}:{HTTPS_PORT}/"


def test_turning_https_off_and_on_restarts_only_the_proxy(container, acme_install, base_https_user):
    hub_pid = container.main_pid(HUB)
    container.run(bootstrap_cmd("--no-https"), timeout=600)
    assert container.main_pid(HUB) == hub_pid
    headers = base_https_user.auth()
    wait_until(lambda: status_code(f"{BASE_URL}/user/{USER}/api/status", headers=headers) == 200,
               30)
    container.run(bootstrap_cmd("--letsencrypt-domain", DOMAIN), timeout=600)  # the rest is remembered
    assert container.main_pid(HUB) == hub_pid
    wait_until(lambda: https_get(f"/user/{USER}/api/status", cafile=acme_install, headers=headers).status_code
               == 200, 60)


@pytest.fixture(scope="module")
def base_https_user(acme_install) -> HubUser:
    """A user with a running server, reached over HTTPS."""
    user = HubUser(f"https://127.0.0.1:{HTTPS_PORT}", USER, PASSWORD, verify=False)
    assert user.login().status_code == 302
    user.spawn()
    user.auth()  # her token, made while the hub is served over HTTPS
    return user


# ------------------------------------------------------------- the site's own certificate files


def subject_cn(der: bytes) -> str:
    from cryptography import x509

    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def test_bad_certificate_files_are_refused_before_anything_changes(container, acme_install):
    before = container.run(f"cat {PREFIX}/records/install.json").stdout
    r = container.run(bootstrap_cmd("--tls-cert", "/nonexistent.pem", "--tls-key", "/nonexistent.key"), check=False)
    assert r.returncode == 1 and "cannot read the TLS certificate /nonexistent.pem" in r.stderr
    container.run(f"head -c 100 /dev/urandom > {PKI}/garbage.key")
    cert, _ = pki.issue(container, PKI, "pebble-api", "unused", ["unused.test"])
    r = container.run(bootstrap_cmd("--tls-cert", cert, "--tls-key", f"{PKI}/garbage.key"), check=False)
    assert r.returncode == 1 and "is not a PEM private key" in r.stderr
    assert container.run(f"cat {PREFIX}/records/install.json").stdout == before


def test_site_certificate_is_served_and_a_replaced_one_is_picked_up(container, acme_install, base_https_user,
                                                                    tmp_path):
    ca = pki.make_ca(container, PKI, "site")
    cert, key = pki.issue(container, PKI, "site", "hub-site", ["hub.site.test"])
    hub_pid = container.main_pid(HUB)
    container.run(bootstrap_cmd("--tls-cert", cert, "--tls-key", key), timeout=600)
    site_ca = tmp_path / "site-ca.pem"
    site_ca.write_text(container.run(f"cat {ca}").stdout)
    wait_until(lambda: subject_cn(served("hub.site.test")["der"]) == "CN=hub.site.test", 30)
    served("hub.site.test", cafile=str(site_ca))  # verifies: issued by the site's CA, for that name
    assert container.run(f"stat -c '%a %G' {PREFIX}/proxy/dynamic/tls.toml").stdout.split() == ["640", "barehub-proxy"]

    # the site renews: new files at the same paths, nothing else done by hand
    proxy_pid = container.main_pid(PROXY)
    new_cert, new_key = pki.issue(container, PKI, "site", "hub-site-renewed", ["hub.site.test", "hub2.site.test"])
    container.run(f"cp {new_key} {key} && cp {new_cert} {cert}")
    wait_until(lambda: "hub2.site.test" in container.run(
        f"openssl s_client -connect 127.0.0.1:{HTTPS_PORT} -servername hub.site.test </dev/null 2>/dev/null "
        f"| openssl x509 -noout -ext subjectAltName", check=False).stdout, 60, interval=1)
    assert container.main_pid(PROXY) == proxy_pid and container.main_pid(HUB) == hub_pid
    assert status_code(f"https://127.0.0.1:{HTTPS_PORT}/user/{USER}/api/status", verify=False,
                       headers=base_https_user.auth()) == 200
