"""What a user does in a browser, done with requests: log in via the form, spawn, run code in a kernel."""
from __future__ import annotations

import json
import time
import uuid

import requests
import websocket


def auth_header(token: str) -> dict:
    """How a client shows the hub, or a server, an API token: the one place the header is written."""
    return {"Authorization": f"token {token}"}


class HubUser:
    """A user as the tests drive the hub: her login through the form, her API token, her server."""

    def __init__(self, base_url: str, name: str, password: str, verify: bool | str = True):
        self.base = base_url.rstrip("/")
        self.name = name
        self.password = password
        self.session = requests.Session()
        # per request: requests lets a CA bundle from the environment override a session's verify
        self.verify = verify
        self._token: str | None = None

    @classmethod
    def working(cls, base_url: str, name: str, password: str, **spawn) -> "HubUser":
        """A user who logged in through the form and has her server running (`spawn`: HubUser.spawn's options)."""
        user = cls(base_url, name, password)
        assert user.login().status_code == 302, f"{name} could not log in"
        user.spawn(**spawn)
        return user

    def xsrf(self) -> str:
        """The hub's XSRF cookie (its path is the hub's, under any base_url); a server may set its own."""
        cookies = [c for c in self.session.cookies if c.name == "_xsrf"]
        return next((c.value for c in cookies if c.path.endswith("/hub/")), cookies[0].value if cookies else "")

    def login(self) -> requests.Response:
        page = self.session.get(f"{self.base}/hub/login", timeout=30, verify=self.verify)
        page.raise_for_status()
        xsrf = self.xsrf()  # the hub's: a user who used her server has its _xsrf cookie too
        return self.session.post(f"{self.base}/hub/login?next=", timeout=60, allow_redirects=False, verify=self.verify,
                                 data={"username": self.name, "password": self.password, "_xsrf": xsrf})

    def spawn(self, timeout: float = 120, form: dict | None = None) -> float:
        """Request the server like the Start button (submitting the spawn page's `form`, if it has one);
        returns seconds until the server answers through the proxy."""
        start = time.monotonic()
        if form is None:
            self.session.get(f"{self.base}/hub/spawn", timeout=60, verify=self.verify)
        else:
            r = self.session.post(f"{self.base}/hub/spawn", data={**form, "_xsrf": self.xsrf()}, timeout=60,
                                  verify=self.verify)
            assert r.status_code < 400, r.text[:500]
        lab = f"{self.base}/user/{self.name}/lab"
        while time.monotonic() - start < timeout:
            # like a browser: the first page load also runs the OAuth round-trip with the hub
            r = self.session.get(lab, timeout=10, allow_redirects=True, verify=self.verify)
            if r.status_code == 200 and r.url.startswith(lab) and "jupyter-config-data" in r.text:
                return time.monotonic() - start
            time.sleep(0.25)
        try:  # what the hub says of it, for whoever reads the failure
            seen = self.api("GET", f"users/{self.name}", timeout=10).json().get("servers")
        except Exception as e:  # noqa: BLE001 (only a diagnostic)
            seen = f"not known: {e}"
        raise AssertionError(f"server of {self.name} not reachable within {timeout} s; the hub's servers of "
                             f"{self.name}: {seen}")

    def token(self) -> str:
        r = self.session.post(f"{self.base}/hub/api/users/{self.name}/tokens", json={"note": "tests"},
                              headers={"X-XSRFToken": self.xsrf()}, timeout=30, verify=self.verify)
        r.raise_for_status()
        return r.json()["token"]

    def auth(self) -> dict:
        """The header with the user's own API token (made at the first use, then kept): for her server's API,
        a request loop, or a request of her own the hub should answer as hers."""
        if not self._token:
            self._token = self.token()
        return auth_header(self._token)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        """The hub's REST API (`path` under /hub/api/) with the user's own token and nothing else, as a script of
        hers calls it: without the login's cookie, which the hub would accept in place of a token it no longer
        knows."""
        kwargs.setdefault("timeout", 60)
        kwargs.setdefault("verify", self.verify)
        return requests.request(method, f"{self.base}/hub/api/{path.lstrip('/')}", headers=self.auth(), **kwargs)

    def stop(self, server: str = "", timeout: float = 60) -> float:
        """Stop her server (or a named one) through the API, and wait until the hub no longer has it, pending stop
        included: a spawn requested while the hub still finishes a stop (its unit may already be inactive) is
        refused with "stopping", and nothing starts (seen under load in full test runs). Seconds taken."""
        r = self.api("DELETE", f"users/{self.name}/servers/{server}" if server else f"users/{self.name}/server")
        assert r.status_code in (202, 204, 404), r.text[:500]
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if server not in self.api("GET", f"users/{self.name}", timeout=10).json().get("servers", {}):
                return time.monotonic() - start
            time.sleep(0.25)
        raise AssertionError(f"the hub still has the server {server!r} of {self.name} {timeout} s after its stop")

    def progress_events(self, until, timeout: float) -> list[dict]:
        """Her spawn page's event stream (what the page shows), read until `until(event)`; bounded."""
        events: list[dict] = []
        deadline = time.monotonic() + timeout
        with self.api("GET", f"users/{self.name}/server/progress", stream=True, timeout=timeout) as r:
            for line in r.iter_lines(decode_unicode=True):
                if line and line.startswith("data:"):
                    events.append(json.loads(line[len("data:"):]))
                    if until(events[-1]):
                        return events
                if time.monotonic() > deadline:
                    break
        raise AssertionError(f"not seen on the spawn page within {timeout} s: {events}")

    def failed_spawn(self, profile: str) -> tuple[str, float]:
        """Request her server with a profile through the REST API and read the spawn page's events until it
        fails: (its message, seconds). A spawn that fails within JupyterHub's slow_spawn_timeout (10 s) answers
        500; the page then says why."""
        start = time.monotonic()
        r = self.api("POST", f"users/{self.name}/server", json={"profile": profile})
        assert r.status_code in (201, 202, 500), r.text
        events = self.progress_events(until=lambda e: e.get("failed"), timeout=120)
        return events[-1]["message"], time.monotonic() - start

    def start_cell(self, code: str, server: str = "") -> str:
        """Run `code` in a new kernel and leave it running with no browser connected (the websocket is closed
        once the kernel says it is busy); returns the kernel's id."""
        token = self.token()
        api = f"{self.base}/user/{self.name}/" + (f"{server}/" if server else "") + "api"
        kernel = requests.post(f"{api}/kernels", json={"name": "python3"}, headers=auth_header(token),
                               timeout=60, verify=self.verify)
        kernel.raise_for_status()
        kid = kernel.json()["id"]
        ws = websocket.create_connection(api.replace("http", "ws", 1) + f"/kernels/{kid}/channels",
                                         header=ws_header(token), timeout=60)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(execute_request(self.name, msg_id, code)))
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                msg = json.loads(ws.recv())
                if (msg.get("parent_header", {}).get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "busy"):
                    return kid
            raise AssertionError("the kernel did not start the cell")
        finally:
            ws.close()

    def start_in_terminal(self, command: str, server: str = "") -> str:
        """Type `command` into a new JupyterLab terminal and close it (the terminal keeps running, as when a browser
        tab is closed); returns the terminal's name."""
        token = self.token()
        base = f"{self.base}/user/{self.name}/" + (f"{server}/" if server else "")
        r = requests.post(f"{base}api/terminals", headers=auth_header(token), timeout=60, verify=self.verify)
        r.raise_for_status()
        name = r.json()["name"]
        ws = websocket.create_connection(base.replace("http", "ws", 1) + f"terminals/websocket/{name}",
                                         header=ws_header(token), timeout=60)
        try:
            ws.send(json.dumps(["stdin", command + "\r"]))
            time.sleep(1)  # the shell reads it
        finally:
            ws.close()
        return name

    def execute(self, code: str, timeout: float = 60, server: str = "") -> str:
        """Start a kernel in the user's server (her named `server`) and run `code` over the websocket; returns its
        stdout."""
        token = self.token()
        headers = auth_header(token)
        api = f"{self.base}/user/{self.name}/" + (f"{server}/" if server else "") + "api"
        kernel = requests.post(f"{api}/kernels", json={"name": "python3"}, headers=headers, timeout=60,
                               verify=self.verify)
        kernel.raise_for_status()
        kid = kernel.json()["id"]
        ws_url = api.replace("http", "ws", 1) + f"/kernels/{kid}/channels"
        sslopt = {"ca_certs": self.verify} if isinstance(self.verify, str) else {}
        ws = websocket.create_connection(ws_url, header=ws_header(token), timeout=timeout, sslopt=sslopt)
        try:
            msg_id = uuid.uuid4().hex
            ws.send(json.dumps(execute_request(self.name, msg_id, code)))
            out = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    msg = json.loads(ws.recv())
                except websocket.WebSocketTimeoutException:
                    break
                if msg["msg_type"] == "status" and msg["content"]["execution_state"] in ("restarting", "dead"):
                    raise AssertionError(f"the kernel died ({msg['content']['execution_state']})")
                if msg.get("parent_header", {}).get("msg_id") != msg_id:
                    continue
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    raise AssertionError(f"kernel error: {msg['content']}")
                elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                    return "".join(out)
            raise AssertionError("no reply from the kernel")
        finally:
            ws.close()
            requests.delete(f"{api}/kernels/{kid}", headers=headers, timeout=30, verify=self.verify)


def ws_header(token: str) -> list[str]:
    """auth_header as websocket-client takes it."""
    return [f"{name}: {value}" for name, value in auth_header(token).items()]


def execute_request(user: str, msg_id: str, code: str) -> dict:
    return {
        "header": {"msg_id": msg_id, "username": user, "session": uuid.uuid4().hex,
                   "msg_type": "execute_request", "version": "5.3"},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False},
    }
