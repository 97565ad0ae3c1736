"""The hub's routes as traefik's rules and as the hub's own bookkeeping, each entry kept as JSON text.

Pure (no I/O): the proxy class (barehub.traefik_proxy) changes entries and writes the two texts.

Why JSON text per entry: the whole rules file is rewritten at every route change, so its serialisation is
paid once per change for EVERY route. Measured here at 5000 routes: toml.dump 1.7 s, json.dumps of the
rules 14 ms plus 13 ms for the bookkeeping, all blocking the hub's event loop; joining the entries' kept
JSON texts takes about a millisecond. traefik reads the rules as YAML, of which JSON is a subset.
"""
from __future__ import annotations

import json

SECTIONS = ("routers", "services", "middlewares")  # http.* entries kept one by one


def entry_text(name: str, value) -> str:
    return f"{json.dumps(name)}:{json.dumps(value, separators=(',', ':'), sort_keys=True)}"


class RouteTable:
    """traefik's http routers/services/middlewares (plus any other dynamic config, kept whole) and the
    hub's bookkeeping of its routes (alias -> {routespec, target, data, router, service})."""

    def __init__(self) -> None:
        self.http: dict[str, dict[str, tuple[object, str]]] = {s: {} for s in SECTIONS}
        self.other: dict = {}  # e.g. tls, if a fragment adds it through the proxy's extra_dynamic_config
        self.routes: dict[str, tuple[dict, str]] = {}

    # --- changes
    def merge(self, traefik_config: dict, jupyterhub_config: dict | None = None) -> None:
        """Deep-merge a dynamic config as upstream's file provider does: an entry given here replaces
        that entry (traefik entries are replaced whole: a route's new target replaces its old one)."""
        for key, value in traefik_config.items():
            if key != "http":
                self.other[key] = deep_merge(self.other.get(key), value)
                continue
            for section, entries in value.items():
                if section not in SECTIONS:
                    self.other.setdefault("http", {})[section] = deep_merge(
                        self.other.get("http", {}).get(section), entries)
                    continue
                for name, entry in entries.items():
                    self.http[section][name] = (entry, entry_text(name, entry))
        for name, record in ((jupyterhub_config or {}).get("routes") or {}).items():
            self.routes[name] = (record, entry_text(name, record))

    def delete(self, traefik_keys, jupyterhub_keys) -> list[str]:
        """Remove keys given as paths (["http", "routers", NAME], ["routes", NAME]); returns the missing."""
        missing = []
        for path in traefik_keys:
            if len(path) == 3 and path[0] == "http" and path[1] in SECTIONS:
                found = self.http[path[1]].pop(path[2], None)
            else:
                found = pop_path(self.other, path)
            if found is None:
                missing.append(".".join(path))
        for path in jupyterhub_keys:
            if len(path) != 2 or path[0] != "routes" or self.routes.pop(path[1], None) is None:
                missing.append(".".join(["jupyterhub", *path]))
        return missing

    # --- what is in it
    def route(self, name: str) -> dict | None:
        entry = self.routes.get(name)
        return entry[0] if entry else None

    def route_records(self) -> dict:
        return {name: record for name, (record, _) in self.routes.items()}

    def entry(self, section: str, name: str):
        entry = self.http[section].get(name)
        return entry[0] if entry else None

    # --- the two texts
    def rules_text(self) -> str:
        """traefik's dynamic config. Empty sections are left out: traefik refuses an empty routers table."""
        parts = [f'"{section}":{{{",".join(text for _, text in entries.values())}}}'
                 for section, entries in self.http.items() if entries]
        extra_http = self.other.get("http", {})
        parts += [entry_text(name, value) for name, value in extra_http.items() if value]
        top = [f'"http":{{{",".join(parts)}}}'] if parts else []
        top += [entry_text(name, value) for name, value in self.other.items() if name != "http" and value]
        return "{" + ",".join(top) + "}\n"

    def routes_text(self) -> str:
        return '{"routes":{' + ",".join(text for _, text in self.routes.values()) + "}}\n"

    # --- from files
    @classmethod
    def from_bookkeeping(cls, records: dict, config_for_route) -> "RouteTable":
        """The table as the bookkeeping says, with each route's traefik entries made again by
        `config_for_route(routespec, target, data)`: the rules follow from the bookkeeping, so a hub that
        stopped between writing the one and the other starts consistent."""
        table = cls()
        for record in records.values():
            traefik_config, jupyterhub_config = config_for_route(record["routespec"], record["target"],
                                                                 record.get("data") or {})
            table.merge(traefik_config, jupyterhub_config)
        return table


def deep_merge(old, new):
    if isinstance(old, dict) and isinstance(new, dict):
        merged = dict(old)
        for key, value in new.items():
            merged[key] = deep_merge(old.get(key), value)
        return merged
    return new


def pop_path(tree: dict, path) -> object | None:
    for key in path[:-1]:
        tree = tree.get(key) if isinstance(tree, dict) else None
        if tree is None:
            return None
    return tree.pop(path[-1], None) if isinstance(tree, dict) else None
