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


async def spawn_one(hub: str, public: str, token: str, name: str, timeout: float = 300,
                    follow: str = "poll") -> float:
    """Seconds from the spawn request until the server answers through the proxy.

    follow="poll": the proxy is asked every 20 ms from the moment the spawn request returns. follow="progress": as
    the spawn-pending page does, the spawn's progress stream is followed until it says ready (or failed), and only
    then is the proxy asked. A hub that answers the spawn request at once (202) is otherwise asked ~50 times a
    second per user through its proxy for as long as the servers take, by a client no browser is like."""
    await api(hub, token, "POST", f"/users/{name}")
    client = AsyncHTTPClient()
    start = time.monotonic()
    r = await api(hub, token, "POST", f"/users/{name}/server")
    if r.code not in (201, 202):
        raise RuntimeError(f"spawn {name}: {r.code} {r.body[:200]}")
    if follow == "progress" and r.code == 202:
        await client.fetch(f"{hub}/hub/api/users/{name}/server/progress", raise_error=False,
                           request_timeout=timeout, headers={"Authorization": f"token {token}"})
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
    """`count` users spawned at once, `repeat` times; every latency and every error. With `pids` ({label: pid}),
    also the CPU seconds each of those processes and the whole machine spent while the servers came up; with
    `rules_file`, how many versions of it traefik was given meanwhile (each rename is one traefik reload)."""
    AsyncHTTPClient.configure(None, max_clients=200)
    latencies, errors, cpu, writes, tcp, hub_api = [], [], {}, 0, {}, []
    for round_ in range(args["repeat"]):
        names = [f"{args['prefix']}{round_}x{i}" for i in range(args["count"])]
        before = cpu_seconds(args.get("pids", {}))
        tcp_before = tcp_counters()
        versions = Versions(args["rules_file"]) if args.get("rules_file") else None
        probe = HubProbe(args["public"]) if args.get("probe") else None
        results = await asyncio.gather(*(spawn_one(args["hub"], args["public"], args["token"], n,
                                                   follow=args.get("follow", "poll")) for n in names),
                                       return_exceptions=True)
        if probe:
            hub_api += await probe.stop()
        if versions:
            writes += await versions.stop()
        after = cpu_seconds(args.get("pids", {}))
        for key in after:
            cpu[key] = round(cpu.get(key, 0) + after[key] - before.get(key, 0), 2)
        tcp_after = tcp_counters()
        for key in tcp_after:
            tcp[key] = tcp.get(key, 0) + tcp_after[key] - tcp_before.get(key, 0)
        latencies += [r for r in results if isinstance(r, float)]
        errors += [str(r) for r in results if not isinstance(r, float)]
        await stop_all(args["hub"], args["token"], names)
    result = {"latency": stats(latencies), "errors": len(errors), "error_samples": errors[:3]}
    if args.get("pids"):
        result["cpu_s"] = cpu
        result["tcp"] = tcp
    if args.get("rules_file"):
        result["rules_writes"] = writes
    if args.get("probe"):
        result["hub_api_s"] = stats(hub_api)
    return result


class HubProbe:
    """What everyone else on the hub meanwhile sees: GET /hub/api through the proxy, one at a time, 0.25 s apart,
    each one's seconds until it is answered (a request still unanswered at stop counts as long as it waited)."""

    def __init__(self, public: str):
        self.url, self.times, self.begun = f"{public}/hub/api/", [], None
        self.task = asyncio.create_task(self.run())

    async def run(self) -> None:
        client = AsyncHTTPClient(force_instance=True)
        while True:
            self.begun = time.monotonic()
            await client.fetch(self.url, raise_error=False, request_timeout=600)
            self.times.append(time.monotonic() - self.begun)
            self.begun = None
            await asyncio.sleep(0.25)

    async def stop(self) -> list[float]:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        return self.times + ([time.monotonic() - self.begun] if self.begun else [])


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each process so far, and of the whole machine ("machine": all cores)."""
    tick = os.sysconf("SC_CLK_TCK")
    result = {}
    for label, pid in pids.items():
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            result[label] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    busy = open("/proc/stat").readline().split()[1:]
    result["machine"] = (sum(int(v) for v in busy) - int(busy[3]) - int(busy[4])) / tick  # less idle, iowait
    return result


def tcp_counters() -> dict[str, int]:
    """The machine's TCP connections accepted and made, and connections its listen queues dropped (the
    container shares the host's network)."""
    counters = {}
    for path, wanted in (("/proc/net/snmp", ("PassiveOpens", "ActiveOpens")),
                         ("/proc/net/netstat", ("ListenOverflows", "ListenDrops"))):
        lines = open(path).read().splitlines()
        for names, values in zip(lines[::2], lines[1::2]):
            for name, value in zip(names.split()[1:], values.split()[1:]):
                if name in wanted:
                    counters[name] = int(value)
    return counters


class Versions:
    """Counts the distinct files seen at `path`, every 2 ms, from now until stop(): the rules file is renamed
    into place at each write, so each new one is a version given to traefik (a lower bound: two versions
    within one look are counted once)."""

    def __init__(self, path: str):
        self.path, self.seen = path, set()
        self.look()
        self.task = asyncio.create_task(self.watch())

    def look(self) -> None:
        try:
            stat = os.stat(self.path)
            self.seen.add((stat.st_ino, stat.st_mtime_ns))  # an inode number can be reused
        except OSError:
            pass

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(0.002)
            self.look()

    async def stop(self) -> int:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        self.look()
        return len(self.seen) - 1  # the one there before


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
    """add/delete latency of one route with `background` routes present, through the proxy class the hub uses;
    with `proxied` given, also the round trip of a request through the proxy to a live server meanwhile."""
    proxy = await proxy_of(args["kind"], json.loads(args["config"]))
    await add_background(proxy, args["kind"], args["background"])
    add, delete = [], []
    for i in range(args["n"]):
        start = time.monotonic()
        await proxy.add_route(f"/bench-rt/{i}/", "http://127.0.0.1:39999", {"user": f"rt{i}"})
        add.append(time.monotonic() - start)
        start = time.monotonic()
        await proxy.delete_route(f"/bench-rt/{i}/")
        delete.append(time.monotonic() - start)
    result = {"add": stats(add), "delete": stats(delete)}
    if args.get("proxied"):
        result["proxied_http"] = await round_trips(args["proxied"], args.get("requests", 300))
    await remove_background(proxy, args["kind"], args["background"])
    return result


async def round_trips(url: str, n: int) -> dict:
    client = AsyncHTTPClient()
    times = []
    for _ in range(n):
        start = time.monotonic()
        await client.fetch(url + "/")
        times.append(time.monotonic() - start)
    return stats(times)


async def behind_traefik(args: dict) -> dict:
    """The option of an in-memory router for user routes behind traefik, measured with CHP as that router:
    `background` routes in CHP, one user route in barehub's traefik leading to CHP, and the request round
    trip to a live server three ways (direct, CHP alone, traefik -> CHP)."""
    chp = await proxy_of("chp", json.loads(args["chp_config"]))
    traefik = await proxy_of("barehub", json.loads(args["traefik_config"]))
    await add_background(chp, "chp", args["background"])
    await traefik.add_route(args["routespec"], args["chp_public"], {"bench": "behind"})
    try:
        target = (await chp.get_all_routes())[args["routespec"]]["target"].rstrip("/") + args["routespec"].rstrip("/")
        return {"direct": await round_trips(target, args["requests"]),
                "chp": await round_trips(args["chp_public"] + args["routespec"].rstrip("/"), args["requests"]),
                "traefik_then_chp": await round_trips(args["traefik_public"] + args["routespec"].rstrip("/"),
                                                      args["requests"])}
    finally:
        await traefik.delete_route(args["routespec"])
        await remove_background(chp, "chp", args["background"])


async def proxy_of(kind: str, config: dict):
    """The proxy class the setup's hub uses, configured as the hub configures it."""
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
    return proxy


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


async def remove_background(proxy, kind: str, n: int) -> None:
    """The background routes go in one write for traefik (one by one, upstream's file provider would
    rewrite its whole file 5000 times: over an hour at 5000 routes)."""
    specs = [f"/bench-bg/{i}/" for i in range(n)]
    if kind == "chp":
        await asyncio.gather(*(proxy.delete_route(spec) for spec in specs))
        return
    traefik_keys, jupyterhub_keys = [], []
    for spec in specs:
        t, j = proxy._keys_for_route(spec)
        traefik_keys += t
        jupyterhub_keys += j
    await proxy._delete_dynamic_config(traefik_keys, jupyterhub_keys)


async def route_target(kind: str, config: dict, routespec: str) -> str:
    return (await (await proxy_of(kind, config)).get_all_routes())[routespec]["target"]


def main() -> None:
    command, args = sys.argv[1], json.loads(sys.argv[2])
    if command == "bare_start":
        result = bare_start(args)
    else:
        result = asyncio.run({"spawns": spawns, "overhead": overhead, "routes": routes,
                              "behind_traefik": behind_traefik}[command](args))
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
