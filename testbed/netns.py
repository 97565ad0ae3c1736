"""A private network for a test cluster: one network namespace per node, joined by a bridge that lives in a
network namespace of its own. Every address exists only inside those namespaces: this machine's own
namespace has no interface, address or route that leads to them, so no test traffic can leave the machine.

    net = Network("bh1234")                    # namespaces are named bh1234-*, removed by those names
    net.add_node("login", "10.77.0.1")        # /run/netns/bh1234-login, eth0 10.77.0.1/24
    with net.entered("login"): requests.get("http://10.77.0.1:28080/")   # a client on the login node
    net.remove()

The veth pairs are made inside the bridge's namespace and one end moved straight into the node's: no
interface of the pair ever appears in this machine's namespace.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess

CLONE_NEWNET = 0x40000000
PREFIX_LENGTH = 24
_libc = ctypes.CDLL(None, use_errno=True)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(path: str):
    """This thread in the network namespace at `path` (sockets it opens, threads and processes it starts live
    there: a client on that node), and back in its own afterwards. Only this thread moves: a network namespace
    is per thread (setns(2))."""
    with open("/proc/thread-self/ns/net", "rb") as own, open(path, "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(own.fileno())


class Network:
    def __init__(self, name: str):
        self.name = name
        self.bridge_ns = f"{name}-net"
        self.namespaces: list[str] = []  # made by this object, removed by name

    def path(self, node: str) -> str:
        return f"/run/netns/{self.name}-{node}"

    def _add_namespace(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self.namespaces.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def create(self) -> "Network":
        self._add_namespace(self.bridge_ns)
        _ip("-n", self.bridge_ns, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.bridge_ns, "link", "set", "br0", "up")
        return self

    def add_node(self, node: str, address: str) -> str:
        """A namespace for `node` with eth0 = `address`/24 on the bridge; returns its path for systemd-nspawn."""
        ns = f"{self.name}-{node}"
        self._add_namespace(ns)
        port = f"to-{node}"[:15]
        _ip("-n", self.bridge_ns, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        _ip("-n", self.bridge_ns, "link", "set", port, "master", "br0", "up")
        _ip("-n", ns, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "eth0")
        _ip("-n", ns, "link", "set", "eth0", "up")
        return self.path(node)

    def entered(self, node: str):
        return entered(self.path(node))

    def remove(self) -> None:
        """Remove the namespaces this object made (their interfaces go with them), by name."""
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.namespaces.clear()
