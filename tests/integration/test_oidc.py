"""OpenID Connect logins through a real identity provider: the shipped oidc.py drop-in, with only its site
values set, against LemonLDAP::NG (Debian's package, behind nginx with HTTPS from a test CA) that signs
users in against the test slapd, as Keycloak in front of a university's LDAP would.

Its own install; the module ends by purging it. Users: carol (jupyter-users), erin (jupyter-admins), dave
(no group), Judy (mail Judy@Barehub.Test, jupyter-users: the username claim is the mail address).
"""
from __future__ import annotations

import base64
import html
import json
import statistics
import time

import pytest
import requests

from tests.integration import cluster, idp, pki
from tests.integration.browser import LAB, Browser
from tests.integration.helpers import (BASE_URL, HUB, MEASUREMENTS, PREFIX, REPO, bootstrap_cmd, resolving_to_loopback,
                                       status_code, wait_until)
from tests.integration.idp_client import OidcUser

FRAGMENT = f"{PREFIX}/jupyterhub_config.d/30-oidc.py"
SECRET_FILE = "/etc/barehub/oidc-client-secret"
PASSWORDS = {**{uid: pw for uid, (pw, _) in cluster.USERS.items()}, "judy": idp.JUDY_PASSWORD}


def site_fragment(ca_file: str) -> str:
    """The shipped oidc.py with the site values an admin of this test site would set."""
    text = (REPO / "jupyterhub_config.d" / "oidc.py").read_text()
    for old, new in {
        'ISSUER = "https://sso.example.org/realms/example"': f'ISSUER = "{idp.ISSUER}"',
        'CALLBACK_URL = "https://hub.example.org/hub/oauth_callback"':
            f'CALLBACK_URL = "{BASE_URL}/hub/oauth_callback"',
        'LOGIN_SERVICE = "the university\'s single sign-on"': 'LOGIN_SERVICE = "barehub test SSO"',
        'USERNAME_CLAIM = "preferred_username"': 'USERNAME_CLAIM = "email"',
        'USERNAME_DOMAIN = ""': 'USERNAME_DOMAIN = "barehub.test"',
        'SCOPES = ["openid", "profile", "email"]': f'SCOPES = ["openid", "profile", "email", "{idp.GROUPS_SCOPE}"]',
        'CA_FILE = ""': f'CA_FILE = "{ca_file}"',
        "PASS_TOKENS_TO_SERVER = False": "PASS_TOKENS_TO_SERVER = True",
    }.items():
        assert old in text, old
        text = text.replace(old, new)
    return text


@pytest.fixture(scope="module")
def provider(container):
    """slapd + LemonLDAP::NG + the hub with the fragment; returns the IdP's CA as a path on this machine."""
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    cluster.setup_ldap(container)
    start = time.monotonic()
    ca = idp.setup_idp(container)
    MEASUREMENTS["OIDC: LemonLDAP::NG set up and answering (s)"] = round(time.monotonic() - start, 1)
    container.run(f"mkdir -p /etc/barehub && install -m 600 /dev/stdin {SECRET_FILE}", input=idp.CLIENT_SECRET)
    container.run(f"mkdir -p {PREFIX}/jupyterhub_config.d && cat > {FRAGMENT}", input=site_fragment(ca))
    # the test's own setting: refresh at the first request 2 s after the last (upstream's default is 300 s)
    # and the provider's state seen at once (barehub keeps its discovery document 60 s, a failure 5 s)
    container.run(f"cat > {PREFIX}/jupyterhub_config.d/31-test-refresh.py",
                  input="c.OIDCAuthenticator.auth_refresh_age = 2\nc.OIDCAuthenticator.discovery_max_age = 0\n"
                        "c.OIDCAuthenticator.discovery_retry_delay = 0\n")
    proc = container.run(bootstrap_cmd(), check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    yield f"/proc/{container.pid}/root{ca}"
    idp.stop_idp(container)
    container.run(f"barehub uninstall --prefix {PREFIX} --purge", check=False)


def person(name: str, ca: str) -> OidcUser:
    return OidcUser(BASE_URL, name, PASSWORDS[name], idp.HOST, ca)


@pytest.fixture(scope="module")
def carol(provider) -> OidcUser:
    user = person("carol", provider)
    start = time.monotonic()
    page = user.login()
    assert user.saw_idp_form and page.status_code == 200 and page.url.startswith(f"{BASE_URL}/hub/"), page.url
    user.spawn(timeout=120)
    MEASUREMENTS["OIDC: login through the IdP's form + spawn to JupyterLab, requests (s)"] = \
        round(time.monotonic() - start, 1)
    return user


def shown(page: requests.Response) -> str:
    """The page's text as the browser shows it (the template escapes apostrophes)."""
    return html.unescape(page.text)


def admin_api(provider, path: str) -> dict:
    erin = person("erin", provider)
    erin.login()
    r = erin.api("GET", path, timeout=30)
    r.raise_for_status()
    return r.json()


def stop_server(provider, name: str) -> None:
    erin = person("erin", provider)
    erin.login()
    erin.api("DELETE", f"users/{name}/server")
    wait_until(lambda: not erin.api("GET", f"users/{name}", timeout=30).json()["servers"], 60)


def journal(container, since: str) -> str:
    return container.run(f"journalctl -u {HUB} --no-pager --since '{since}'").stdout


def now(container) -> str:
    return container.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()


def test_a_user_in_the_allowed_group_signs_in_at_the_idp_and_works_as_herself(container, carol):
    assert carol.execute("import getpass; print(getpass.getuser())").strip() == "carol"


def test_the_users_server_gets_her_access_token_and_it_works_at_the_idp(container, carol):
    """PASS_TOKENS_TO_SERVER: code in her server calls the IdP's userinfo with the token it was given."""
    out = carol.execute(
        "import json, os, ssl, urllib.request\n"
        f"req = urllib.request.Request('{idp.ISSUER}/oauth2/userinfo', "
        "headers={'Authorization': 'Bearer ' + os.environ['OIDC_ACCESS_TOKEN']})\n"
        f"ctx = ssl.create_default_context(cafile='{idp.CA}')\n"
        "print(json.load(urllib.request.urlopen(req, context=ctx, timeout=10))['email'])")
    assert out.strip() == "carol@barehub.test"


def test_a_user_outside_the_allowed_groups_is_refused_with_a_page_that_says_why(provider):
    dave = person("dave", provider)
    page = dave.login()
    assert dave.saw_idp_form and page.status_code == 403
    assert "not in a group allowed to use this hub" in shown(page) and "jupyter-users" in shown(page)


def test_an_admin_group_member_is_admin_and_the_username_claim_is_normalised(provider, carol):
    judy = person("judy", provider)
    page = judy.login()
    assert page.status_code == 200, page.text[:300]
    users = {u["name"]: u for u in admin_api(provider, "users")}
    assert users["erin"]["admin"] is True and users["carol"]["admin"] is False
    assert "judy" in users and "Judy" not in users  # Judy@Barehub.Test -> judy
    assert judy.token()  # her own session works under the normalised name


def test_a_login_that_names_a_system_account_is_refused_a_server_and_nothing_runs_as_it(container, provider):
    """A person chooses her mail at the provider (self-registration, a renamed account): daemon@barehub.test
    signs her in as "daemon", a system account. She is refused a server, saying why, and nothing runs as it."""
    idp.add_person(container, "mallory", "daemon@barehub.test", "mallory-Secret-9")
    mallory = OidcUser(BASE_URL, "mallory", "mallory-Secret-9", idp.HOST, provider)
    page = mallory.login()
    assert mallory.saw_idp_form and page.url.startswith(f"{BASE_URL}/hub/"), page.url
    # signed in, the hub starts her server at once (no spawn form): the page she lands on says why it did not
    assert page.status_code == 403 and "not a person's account" in html.unescape(page.text), page.text[-2000:]
    mallory.name = "daemon"  # the hub's name for her, from the username claim
    r = mallory.api("POST", "users/daemon/server")  # and through the REST API with her own token
    assert r.status_code == 403 and "not a person's account" in r.json()["message"], r.text
    assert "uid 1" in r.json()["message"], r.text
    assert container.run("ps -u daemon -o pid=,comm=", check=False).stdout.strip() == ""
    assert "jupyter-daemon" not in container.run("systemctl list-units --all --no-legend 'jupyter-*'").stdout
    journal = container.run(f"journalctl -u {HUB} --no-pager -o cat -n 200").stdout
    assert "refused a server for the login 'daemon'" in journal


def test_tokens_are_kept_encrypted_in_auth_state(container, provider, carol):
    state = admin_api(provider, "users/carol")["auth_state"]
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert state["oauth_user"]["groups"] == ["jupyter-users"]
    raw = base64.b64decode(container.run(f"base64 -w0 {PREFIX}/state/jupyterhub.sqlite").stdout)
    assert state["access_token"].encode() not in raw and state["refresh_token"].encode() not in raw
    assert b"carol" in raw  # the database was read: the user is there, the tokens are not in clear


def userinfo_status(token: str, ca: str) -> int:
    with resolving_to_loopback(idp.HOST):
        return requests.get(f"{idp.ISSUER}/oauth2/userinfo", headers={"Authorization": f"Bearer {token}"},
                            verify=ca, timeout=10).status_code


def test_an_expired_access_token_is_refreshed_with_the_refresh_token(provider, carol):
    old = admin_api(provider, "users/carol")["auth_state"]["access_token"]
    assert userinfo_status(old, provider) == 200
    waited = wait_until(lambda: userinfo_status(old, provider) == 401, idp.ACCESS_TOKEN_SECONDS + 30, interval=1)
    MEASUREMENTS["OIDC: access token refused by the IdP after (s)"] = round(waited, 1)
    assert carol.get(f"{BASE_URL}/hub/home").status_code == 200  # her next request: the hub refreshes
    new = admin_api(provider, "users/carol")["auth_state"]["access_token"]
    assert new != old and userinfo_status(new, provider) == 200


def test_logout_ends_the_session_at_the_idp_too(provider):
    erin = person("erin", provider)
    erin.login()
    assert erin.saw_idp_form
    assert erin.login().status_code == 200 and not erin.saw_idp_form  # signed in at the IdP: no form
    page = erin.logout()
    assert page.url.startswith(f"{BASE_URL}/hub/login"), page.url
    erin.login()
    assert erin.saw_idp_form  # the IdP asks for the password again


def test_a_wrong_client_secret_gives_a_clear_page_and_log_line_and_the_hub_keeps_serving(container, provider,
                                                                                        carol):
    since = now(container)
    container.run(f"install -m 600 /dev/stdin {SECRET_FILE}", input="not-the-secret\n")  # read at each login
    try:
        page = person("erin", provider).login()
        assert page.status_code == 502 and "refused the hub's own credentials" in shown(page)
        log = journal(container, since)
        assert "refused the hub's client credentials" in log and SECRET_FILE in log
        assert "not-the-secret" not in log and idp.CLIENT_SECRET not in log
        assert_hub_serves(carol)
    finally:
        container.run(f"install -m 600 /dev/stdin {SECRET_FILE}", input=idp.CLIENT_SECRET)
    assert person("erin", provider).login().status_code == 200


def assert_hub_serves(user: OidcUser) -> None:
    assert status_code(f"{BASE_URL}/hub/health") == 200
    assert user.get(f"{BASE_URL}/hub/home").status_code == 200
    assert user.get(f"{BASE_URL}/user/{user.name}/api/status").status_code == 200


def test_an_unreachable_idp_gives_a_clear_page_and_log_line_and_signed_in_users_stay(container, provider, carol):
    since = now(container)
    idp.stop_web(container)
    try:
        page = person("erin", provider).login()
        assert page.status_code == 503 and "cannot be reached right now" in shown(page)
        assert f"the identity provider at {idp.ISSUER}/.well-known/openid-configuration cannot be reached" in \
            journal(container, since)
        time.sleep(3)  # past auth_refresh_age: carol's next requests try to refresh against the IdP
        assert_hub_serves(carol)
        assert "carol stays signed in until the provider can be asked again" in journal(container, since)
    finally:
        idp.start_web(container)
    assert person("erin", provider).login().status_code == 200


def test_an_untrusted_idp_certificate_gives_a_clear_page_and_log_line(container, provider, carol):
    other_ca = pki.make_ca(container, "/etc/barehub-test/oidc-other", "other")
    reload_with(container, "CA_FILE", f'"{other_ca}"')
    try:
        since = now(container)
        page = person("erin", provider).login()
        assert page.status_code == 502 and "does not trust the certificate" in shown(page)
        log = journal(container, since)
        assert "certificate at" in log and "is not trusted" in log and other_ca in log
        assert_hub_serves(carol)
    finally:
        reload_with(container, "CA_FILE", f'"{idp.CA}"')


def reload_with(container, setting: str, value: str) -> None:
    """The fragment's site value `setting` changed, and the hub reloaded, as an admin does."""
    container.run(f"sed -i 's|^{setting} = .*|{setting} = {value}|' {FRAGMENT} && systemctl reload {HUB}")
    time.sleep(1)
    wait_until(lambda: status_code(f"{BASE_URL}/hub/health") == 200, 120)


def test_a_user_the_site_no_longer_allows_is_signed_out_at_her_next_request(container, provider):
    """oauthenticator refreshes a signed-in user's groups but never asks again whether she may use the hub;
    barehub's refresh does (here after auth_refresh_age, 2 s in this test)."""
    judy = person("judy", provider)
    assert judy.login().status_code == 200
    reload_with(container, "ALLOWED_GROUPS", '{"jupyter-admins"}')  # the site narrows who may use the hub
    try:
        time.sleep(3)
        page = judy.get(f"{BASE_URL}/hub/home")
        assert page.url.startswith(f"{BASE_URL}/hub/login"), page.url  # signed out ...
        page = judy.login()  # ... and refused at her next login (her IdP session still holds)
        assert not judy.saw_idp_form and page.status_code == 403
        assert "not in a group allowed to use this hub" in shown(page)
    finally:
        reload_with(container, "ALLOWED_GROUPS", '{"jupyter-users"}')


def test_check_passes_and_the_hub_names_the_authenticator(container, provider):
    out = container.run(f"barehub check --prefix {PREFIX}").stdout
    assert "config OK" in out
    assert json.loads(container.run(f"barehub status --json --prefix {PREFIX}").stdout)["units"]
    # JupyterHub logs the class it made at each start: the last start's is the drop-in's
    journal = container.run(f"journalctl -u {HUB} --no-pager -o cat").stdout
    used = [line for line in journal.splitlines() if "Using Authenticator:" in line]
    assert used and "Using Authenticator: barehub.oidc.OIDCAuthenticator" in used[-1], used[-1:]


# --- a person, in Chromium


def browser_login_to_lab(b: Browser, user: str) -> float:
    start = time.monotonic()
    b.get(f"{BASE_URL}/hub/login")
    b.wait_for_css(".service-login a")
    assert "Sign in with barehub test SSO" in b.text()
    b.shot(f"{user}-hub-login")
    b.click(".service-login a")
    b.wait_for_css('input[name="password"]')
    assert idp.HOST in b.url
    b.shot(f"{user}-idp-form")
    b.fill({"user": user, "password": PASSWORDS[user]})
    b.driver.find_element("css selector", 'input[name="password"]').submit()
    b.wait_for_css(LAB, 120)
    return time.monotonic() - start


def test_a_person_signs_in_through_the_idps_form_in_chromium_and_signs_out_of_both(container, provider):
    times = []
    with Browser("oidc", accept_certs=True, loopback_names=(idp.HOST,)) as b:
        for round_ in range(3):
            stop_server(provider, "judy")  # each round starts her server, as a morning login does
            times.append(browser_login_to_lab(b, "judy"))
            assert b.url.startswith(f"{BASE_URL}/user/judy/lab")
            if round_ == 0:
                b.shot("judy-jupyterlab")
            b.get(f"{BASE_URL}/hub/logout")
            b.wait_for(lambda b: idp.HOST in b.url or "/hub/login" in b.url, 30, "logout")
            if idp.HOST in b.url:  # LemonLDAP::NG asks "Do you want to logout?"
                b.wait_for_text("Do you want to logout?")
                b.shot("idp-logout-confirm")
                [accept] = [e for e in b.driver.find_elements("css selector", "form button") if e.text == "Accept"]
                accept.click()
            b.wait_for(lambda b: b.url.startswith(f"{BASE_URL}/hub/login"), 30, "back at the hub's login page")
            b.shot("signed-out")
    MEASUREMENTS["OIDC: browser, hub login page -> IdP form -> JupyterLab, median of 3 (s)"] = \
        round(statistics.median(times), 1)


def test_a_hub_user_install_names_the_secret_file_it_cannot_read_and_signs_in_once_it_can(container, provider):
    """Last: it re-installs with --hub-user, as a site moving the hub off root does; the secret file stays
    root's 0600, which that hub cannot read."""
    container.run("id jhub || useradd --system --create-home --home-dir /var/lib/jhub jhub")
    container.run(bootstrap_cmd("--hub-user", "jhub"), timeout=900)
    since = now(container)
    page = person("erin", provider).login()
    assert page.status_code == 502 and "sign-in is misconfigured" in shown(page)
    log = journal(container, since)
    assert f"the client secret file {SECRET_FILE} cannot be read by the hub's user jhub" in log
    assert f"chown jhub {SECRET_FILE}" in log
    container.run(f"chown jhub {SECRET_FILE}")
    assert person("erin", provider).login().status_code == 200
