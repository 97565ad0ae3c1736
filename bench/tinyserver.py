"""A lightweight single-user server for the benchmarks: answers HTTP and echoes websocket messages.

It listens where JupyterHub's spawner tells it (JUPYTERHUB_SERVICE_URL), so that spawn benchmarks
measure the hub and the proxy, not JupyterLab's import time (several seconds on 2 cores).

bench/activity.py: while the file REPORTS_SWITCH says "work", it reports to the hub as a server whose kernel is busy
(barehub.server_activity's own reporter, at the cadence the hub answers); while it says "activity", it posts
JupyterHub's own activity report (what jupyterhub-singleuser sends) at the same cadence. One line per report in
REPORTS_LOG.

bench/polling.py: --batch makes it a Slurm job's server: it listens on a port (of BAREHUB_PORT_RANGE, or any) and
reports it to the hub (POST /hub/api/batchspawner {"port": N}, what barehub.batch_singleuser and upstream's
batchspawner-singleuser do) before serving there; with only tornado imported (~25 MB, not jupyterhub's ~80), so 200
of them fit. --activity SWITCH EVERY: while the file SWITCH says "activity", it posts JupyterHub's activity report
(JUPYTERHUB_ACTIVITY_URL, what jupyterhub-singleuser sends every 300 s) every EVERY seconds; one line per report in
SWITCH.log.
"""
import argparse
import json
import random
import socket
import urllib.request
import os
import sys
import time
from urllib.parse import quote, urlparse

import tornado.gen
import tornado.httpserver
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
    parser = argparse.ArgumentParser()
    parser.add_argument("url", nargs="?")
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--activity", nargs=2, metavar=("SWITCH", "EVERY"))
    args, _ = parser.parse_known_args()  # (a spawner's own arguments are not ours)
    url = urlparse(os.environ.get("JUPYTERHUB_SERVICE_URL") or args.url)
    prefix = url.path.rstrip("/")
    app = tornado.web.Application([(rf"{prefix}/ws", Echo), (rf"{prefix}(/.*)?", Ok)])
    if args.batch:
        server = tornado.httpserver.HTTPServer(app)
        server.add_socket(held_and_reported_port())
    else:
        app.listen(url.port, address=url.hostname or "127.0.0.1")
    if os.environ.get("TINYSERVER_READY_FILE"):
        with open(os.environ["TINYSERVER_READY_FILE"], "w") as f:
            f.write(str(time.time()))
    if os.path.exists(REPORTS_SWITCH):
        tornado.ioloop.IOLoop.current().add_callback(report_loop)
    if args.activity:
        tornado.ioloop.IOLoop.current().add_callback(activity_loop, args.activity[0], float(args.activity[1]))
    tornado.ioloop.IOLoop.current().start()


def held_and_reported_port() -> socket.socket:
    """A socket listening on all of the node's IPv4 addresses, its port told to the hub (the job ends if it
    cannot tell it within 60 s)."""
    low, _, high = (os.environ.get("BAREHUB_PORT_RANGE") or "1024-65535").partition("-")
    ports = list(range(int(low), int(high or low) + 1))
    random.shuffle(ports)
    for port in ports:
        sock = socket.socket()
        try:
            sock.bind(("0.0.0.0", port))
            sock.listen(128)
            break
        except OSError:
            sock.close()
    else:
        raise SystemExit("no free port")
    sock.setblocking(False)
    request = urllib.request.Request(f"{os.environ['JUPYTERHUB_API_URL']}/batchspawner",
                                     data=json.dumps({"port": port}).encode(), method="POST",
                                     headers={"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}",
                                              "Content-Type": "application/json"})
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(request, timeout=10).close()
            return sock
        except OSError as e:
            if time.monotonic() > deadline:
                raise SystemExit(f"could not report port {port}: {e}")
            time.sleep(1)


async def activity_loop(switch: str, every: float):
    """JupyterHub's activity report (what jupyterhub-singleuser posts) every `every` s while `switch` says so; the
    first at a random point of the period, so that the servers' reports spread evenly."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    server = os.environ.get("JUPYTERHUB_SERVER_NAME", "")
    headers = {"Authorization": f"token {os.environ['JUPYTERHUB_API_TOKEN']}"}
    await tornado.gen.sleep(random.uniform(0, every))
    while True:
        started = time.monotonic()
        if open(switch).read().strip() == "activity":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            body = {"last_activity": now, "servers": {server: {"last_activity": now}}}
            response = await AsyncHTTPClient().fetch(HTTPRequest(
                os.environ["JUPYTERHUB_ACTIVITY_URL"], method="POST", body=json.dumps(body), headers=headers,
                request_timeout=30), raise_error=False)
            with open(f"{switch}.log", "a") as f:
                f.write("activity\n" if response.code < 300 else f"refused {response.code}\n")
        await tornado.gen.sleep(max(0.0, every - (time.monotonic() - started)))


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
