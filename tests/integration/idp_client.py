"""What a user's browser does for an OpenID Connect login, done with requests: the hub sends it to the
provider, the provider's own login form is filled in and sent, the provider sends it back to the hub."""
from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin

import requests

from tests.integration.helpers import resolving_to_loopback
from tests.integration.hubclient import HubUser


class _Forms(HTMLParser):
    """The forms of a page: action, method and the inputs with their values."""

    def __init__(self):
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attrs.get("action") or "", "method": (attrs.get("method") or "get").lower(),
                               "fields": {}})
        elif tag in ("input", "button") and self.forms and attrs.get("name"):
            if attrs.get("type") in ("checkbox", "radio") and "checked" not in attrs:
                return
            self.forms[-1]["fields"].setdefault(attrs["name"], attrs.get("value") or "")


def forms(html: str) -> list[dict]:
    parser = _Forms()
    parser.feed(html)
    return parser.forms


def password_form(page: requests.Response) -> dict | None:
    """The page's login form (the one with a password field), if it has one."""
    return next((f for f in forms(page.text) if "password" in f["fields"]), None)


def submit(session: requests.Session, page: requests.Response, form: dict, values: dict, verify) -> requests.Response:
    """Send `form` of `page` as a browser would: its hidden inputs kept, `values` typed in."""
    url = urljoin(page.url, form["action"] or page.url)
    data = {**form["fields"], **values}
    if form["method"] == "post":
        return session.post(url, data=data, timeout=60, verify=verify, allow_redirects=False)
    return session.get(url, params=data, timeout=60, verify=verify, allow_redirects=False)


class OidcUser(HubUser):
    """A hub user who signs in through the provider at `idp_host` (resolved to loopback), whose HTTPS is
    checked against `idp_ca`."""

    def __init__(self, base_url: str, name: str, password: str, idp_host: str, idp_ca: str):
        super().__init__(base_url, name, password)
        self.idp_host, self.idp_ca = idp_host, idp_ca
        self.saw_idp_form = False

    def _verify(self, url: str):
        return self.idp_ca if self.idp_host in url else True

    def get(self, url: str, **kw) -> requests.Response:
        """A GET that follows redirects across the hub and the provider, each checked against its own CA."""
        with resolving_to_loopback(self.idp_host):
            r = self.session.get(url, timeout=60, allow_redirects=False, verify=self._verify(url), **kw)
            for _ in range(20):
                if not r.is_redirect:
                    return r
                url = urljoin(r.url, r.headers["location"])
                r = self.session.get(url, timeout=60, allow_redirects=False, verify=self._verify(url))
        raise AssertionError(f"more than 20 redirects, at {url}")

    def login(self) -> requests.Response:
        """Press "Sign in with ..." on the hub's login page; fill in the provider's form if it shows one.
        Returns the page the browser ends on (the hub's, after the provider sent it back)."""
        page = self.get(f"{self.base}/hub/oauth_login?next=")
        form = password_form(page) if self.idp_host in page.url else None
        self.saw_idp_form = form is not None
        if form is None:
            return page
        with resolving_to_loopback(self.idp_host):
            answer = submit(self.session, page, form, {"user": self.name, "password": self.password},
                            self._verify(page.url))
        return self.get(urljoin(answer.url, answer.headers["location"])) if answer.is_redirect else answer

    def logout(self) -> requests.Response:
        """/hub/logout as a browser follows it; the provider's logout confirmation is confirmed if shown."""
        page = self.get(f"{self.base}/hub/logout")
        if self.idp_host in page.url:
            confirm = next((f for f in forms(page.text) if f["method"] == "post"), None)
            if confirm is not None:
                with resolving_to_loopback(self.idp_host):
                    answer = submit(self.session, page, confirm, {}, self._verify(page.url))
                page = self.get(urljoin(answer.url, answer.headers["location"])) if answer.is_redirect else answer
        return page
