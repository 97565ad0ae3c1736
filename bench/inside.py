"""Measurements that run inside the benchmark container, with the hub env's python.

Usage: python inside.py COMMAND JSON-ARGS; prints one JSON result. Kept in one small module so the
driver (bench.py, on the host) only starts setups and collects numbers.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request

from tornado.httpclient import AsyncHTTPClient, HTTPClientError
from tornado.websocket import websocket_connect


def stats(values: list[float]) -> dict:
    values = sorted(values)
    if not values:
        return {"n": 0}
    return {"n": len(values), "median": statistics.median(values), "p90": values[int(0.9 * (len(values) - 1))],
            "min": values[0], "max": values[-1]}


def http_ok(url: str, timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status == 200
    except Exception:
        return False


async def api(hub: str, token: str, method: str, path: str, body=None):
    client = AsyncHTTPClient()
    return await client.fetch(f"{hub}/hub/api{path}", method=method, raise_error=False, request_timeout=600,
                              headers={"Authorization": f"token {token}"},
                              body=json.dumps(body) if body is not None else (None if method in ("GET", "DELETE")
                                                                              else "{}"))


async def spawn_one(hub: str, public: str, token: str, name: str, timeout: float = 600) -> float:
    """Seconds from the spawn request until the server answers through the proxy."""
    await api(hub, token, "POST", f"/users/{name}")
    client = AsyncHTTPClient()
    start = time.monotonic()
    r = await api(hub, token, "POST", f"/users/{name}/server")
    if r.code not in (201, 202):
        raise RuntimeError(f"spawn {name}: {r.code} {r.body[:200]}")
    while time.monotonic() - start < timeout:
        try:
            resp = await client.fetch(f"{public}/user/{name}/", request_timeout=10, follow_redirects=False)
            if resp.code == 200 and resp.body == b"ok":
                return time.monotonic() - start
        except (HTTPClientError, OSError):
            pass
        await asyncio.sleep(0.02)
    raise RuntimeError(f"{name} not reachable through the proxy in {timeout} s")


async def stop_all(hub: str, token: str, names: list[str]) -> None:
    await asyncio.gather(*(api(hub, token, "DELETE", f"/users/{n}/server") for n in names))
    for _ in range(600):
        r = await api(hub, token, "GET", "/users?state=active")
        if r.code == 200 and not json.loads(r.body):
            return
        await asyncio.sleep(0.2)


async def spawns(args: dict) -> dict:
    """`count` users spawned at once, `repeat` times; every latency and every error."""
    AsyncHTTPClient.configure(None, max_clients=200)
    latencies, errors = [], []
    for round_ in range(args["repeat"]):
        names = [f"{args['prefix']}{round_}x{i}" for i in range(args["count"])]
        results = await asyncio.gather(*(spawn_one(args["hub"], args["public"], args["token"], n) for n in names),
                                       return_exceptions=True)
        latencies += [r for r in results if isinstance(r, float)]
        errors += [str(r) for r in results if not isinstance(r, float)]
        await stop_all(args["hub"], args["token"], names)
    return {"latency": stats(latencies), "errors": len(errors), "error_samples": errors[:3]}


def bare_start(args: dict) -> dict:
    """The tiny server started directly: exec until it answers HTTP (what the hub and proxy add to)."""
    times = []
    for i in range(args["repeat"]):
        port = 29500 + i
        url = f"http://127.0.0.1:{port}/user/bare/"
        start = time.monotonic()
        proc = subprocess.Popen([sys.executable, args["tinyserver"], url])
        try:
            while not http_ok(url, timeout=1):
                time.sleep(0.01)
            times.append(time.monotonic() - start)
        finally:
            proc.terminate()
            proc.wait()
    return {"latency": stats(times)}


async def overhead(args: dict) -> dict:
    """Request and websocket round-trip times to one server: directly, and through the proxy."""
    client = AsyncHTTPClient()
    direct = (await route_target(args["kind"], json.loads(args["config"]), args["routespec"])).rstrip("/")
    direct += args["routespec"].rstrip("/")
    result = {}
    for label, base in (("direct", direct), ("proxied", args["proxied"])):
        times = []
        for _ in range(args["n"]):
            start = time.monotonic()
            await client.fetch(base + "/")
            times.append(time.monotonic() - start)
        ws = await websocket_connect(base.replace("http", "ws", 1) + "/ws")
        ws_times = []
        for i in range(args["n"]):
            start = time.monotonic()
            await ws.write_message(str(i))
            await ws.read_message()
            ws_times.append(time.monotonic() - start)
        ws.close()
        result[label] = {"http": stats(times), "websocket": stats(ws_times)}
    return result


async def routes(args: dict) -> dict:
    """add/delete latency of one route with `background` routes present, through the proxy class the hub uses."""
    from traitlets.config import Config

    config = Config(json.loads(args["config"]))
    if args["kind"] == "chp":
        from jupyterhub.proxy import ConfigurableHTTPProxy as cls
    elif args["kind"] == "traefik-default":
        from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy as cls
    else:
        from barehub.traefik_proxy import BarehubTraefikProxy as cls
    proxy = cls(config=config)
    if getattr(proxy, "_start_future", None):
        await proxy._start_future
    await add_background(proxy, args["kind"], args["background"])
    add, delete = [], []
    for i in range(args["n"]):
        start = time.monotonic()
        await proxy.add_route(f"/bench-rt/{i}/", "http://127.0.0.1:39999", {"user": f"rt{i}"})
        add.append(time.monotonic() - start)
        start = time.monotonic()
        await proxy.delete_route(f"/bench-rt/{i}/")
        delete.append(time.monotonic() - start)
    await asyncio.gather(*(proxy.delete_route(f"/bench-bg/{i}/") for i in range(args["background"])))
    return {"add": stats(add), "delete": stats(delete)}


async def add_background(proxy, kind: str, n: int) -> None:
    """The routes already present. traefik's file provider gets them in one write (one by one, at a
    2 s throttle, 1000 routes would take over half an hour); CHP gets them concurrently."""
    specs = [(f"/bench-bg/{i}/", f"http://127.0.0.1:{40000 + i % 1000}", {"user": f"bg{i}"}) for i in range(n)]
    if kind == "chp":
        await asyncio.gather(*(proxy.add_route(*spec) for spec in specs))
        return
    traefik, jupyterhub = {"http": {"routers": {}, "services": {}}}, {"routes": {}}
    for spec in specs:
        t, j = proxy._dynamic_config_for_route(*spec)
        for key in ("routers", "services"):
            traefik["http"][key].update(t["http"][key])
        jupyterhub["routes"].update(j["routes"])
    await proxy._apply_dynamic_config(traefik, jupyterhub)
    await proxy._wait_for_route(specs[-1][0])


async def route_target(kind: str, config: dict, routespec: str) -> str:
    from traitlets.config import Config

    if kind == "chp":
        from jupyterhub.proxy import ConfigurableHTTPProxy as cls
    elif kind == "traefik-default":
        from jupyterhub_traefik_proxy.fileprovider import TraefikFileProviderProxy as cls
    else:
        from barehub.traefik_proxy import BarehubTraefikProxy as cls
    proxy = cls(config=Config(config))
    if getattr(proxy, "_start_future", None):
        await proxy._start_future
    return (await proxy.get_all_routes())[routespec]["target"]


def main() -> None:
    command, args = sys.argv[1], json.loads(sys.argv[2])
    if command == "bare_start":
        result = bare_start(args)
    else:
        result = asyncio.run({"spawns": spawns, "overhead": overhead, "routes": routes}[command](args))
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
