"""A lightweight single-user server for the benchmarks: answers HTTP and echoes websocket messages.

It listens where JupyterHub's spawner tells it (JUPYTERHUB_SERVICE_URL), so that spawn benchmarks
measure the hub and the proxy, not JupyterLab's import time (several seconds on 2 cores).

bench/activity.py: while the file REPORTS_SWITCH says "work", it reports to the hub as a server whose kernel is busy
(barehub.server_activity's own reporter, at the cadence the hub answers); while it says "activity", it posts
JupyterHub's own activity report (what jupyterhub-singleuser sends) at the same cadence. One line per report in
REPORTS_LOG.
"""
import json
import os
import sys
import time
from urllib.parse import quote, urlparse

import tornado.gen
import tornado.ioloop
import tornado.web
import tornado.websocket


class Ok(tornado.web.RequestHandler):
    def get(self, *_):
        self.write("ok")


class Echo(tornado.websocket.WebSocketHandler):
    def on_message(self, message):
        self.write_message(message)


def main() -> None:
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL") or sys.argv[1])
    prefix = url.path.rstrip("/")
    app = tornado.web.Application([(rf"{prefix}/ws", Echo), (rf"{prefix}(/.*)?", Ok)])
    app.listen(url.port, address=url.hostname or "127.0.0.1")
    if os.environ.get("TINYSERVER_READY_FILE"):
        with open(os.environ["TINYSERVER_READY_FILE"], "w") as f:
            f.write(str(time.time()))
    if os.path.exists(REPORTS_SWITCH):
        tornado.ioloop.IOLoop.current().add_callback(report_loop)
    tornado.ioloop.IOLoop.current().start()


# in the hub's state directory: the hub unit (PrivateTmp, ProtectSystem=strict) and its servers can write there
REPORTS_SWITCH, REPORTS_LOG = "/opt/barehub/state/bench-reports", "/opt/barehub/state/bench-reports.log"


async def report_loop():
    from barehub.server_activity import HubReporter
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    reporter, since = HubReporter(), time.time()
    user, server = os.environ["JUPYTERHUB_USER"], os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    activity_url = f"{os.environ['JUPYTERHUB_API_URL']}/users/{quote(user, safe='')}/activity"
    last = 0.0
    while True:
        mode = open(REPORTS_SWITCH).read().strip()
        if mode in ("work", "activity") and time.time() - last >= reporter.report_every_s:
            last = time.time()
            if mode == "work":
                taken = await reporter.send({"busy": "kernel", "busy_since": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                                            time.gmtime(since))})
            else:
                now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                body = {"last_activity": now, "servers": {server: {"last_activity": now}}}
                response = await AsyncHTTPClient().fetch(HTTPRequest(
                    activity_url, method="POST", body=json.dumps(body),
                    headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"}), raise_error=False)
                taken = response.code < 300
            with open(REPORTS_LOG, "a") as f:
                f.write(f"{mode}\n" if taken else f"{mode} refused\n")
        await tornado.gen.sleep(1 + (hash(user) % 1000) / 1000)  # spread over the second


if __name__ == "__main__":
    main()
