"""A lightweight single-user server for the benchmarks: answers HTTP and echoes websocket messages.

It listens where JupyterHub's spawner tells it (JUPYTERHUB_SERVICE_URL), so that spawn benchmarks
measure the hub and the proxy, not JupyterLab's import time (several seconds on 2 cores).
"""
import os
import sys
import time
from urllib.parse import urlparse

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
    tornado.ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
