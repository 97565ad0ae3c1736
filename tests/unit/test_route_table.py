"""The routes' two texts (barehub.route_table): what traefik reads and what the hub keeps, built from kept
per-entry JSON, equal to serialising the whole table."""
import json

from barehub.route_table import RouteTable


def route(spec: str, target: str) -> tuple[dict, dict]:
    alias = spec.strip("/").replace("/", "_")
    return ({"http": {"routers": {f"router_{alias}": {"rule": f"PathPrefix(`{spec}`)", "service": f"service_{alias}"}},
                      "services": {f"service_{alias}": {"loadBalancer": {"servers": [{"url": target}]}}}}},
            {"routes": {f"router_{alias}": {"routespec": spec, "target": target, "data": {"user": alias}}}})


def test_the_texts_are_the_tables_json_and_a_changed_target_replaces_the_entry():
    table = RouteTable()
    table.merge({"http": {"routers": {"route_api": {"rule": "Host(`127.0.0.1`)"}},
                          "middlewares": {"auth_api": {"basicAuth": {"users": ["u:h"]}}}}})
    for i in range(3):
        table.merge(*route(f"/user/u{i}/", f"http://127.0.0.1:{9000 + i}"))
    table.merge(*route("/user/u1/", "http://127.0.0.1:9999"))
    rules = json.loads(table.rules_text())
    assert set(rules["http"]) == {"routers", "services", "middlewares"}
    assert rules["http"]["services"]["service_user_u1"] == {"loadBalancer": {"servers": [{"url": "http://127.0.0.1:9999"}]}}
    assert len(rules["http"]["routers"]) == 4 and "jupyterhub" not in rules
    kept = json.loads(table.routes_text())["routes"]
    assert kept["router_user_u1"]["target"] == "http://127.0.0.1:9999" and len(kept) == 3


def test_deleting_leaves_no_empty_section_and_names_what_was_missing():
    table = RouteTable()
    table.merge(*route("/user/a/", "http://127.0.0.1:1"))
    missing = table.delete([["http", "routers", "router_user_a"], ["http", "services", "service_user_a"],
                            ["http", "routers", "nope"]], [["routes", "router_user_a"]])
    assert missing == ["http.routers.nope"]
    assert json.loads(table.rules_text()) == {}  # traefik refuses empty routers/services tables
    assert json.loads(table.routes_text()) == {"routes": {}}


def test_the_rules_follow_from_the_bookkeeping_at_a_start():
    records = {"router_user_a": {"routespec": "/user/a/", "target": "http://127.0.0.1:1", "data": {"user": "a"}}}
    table = RouteTable.from_bookkeeping(records, lambda spec, target, data: route(spec, target))
    assert json.loads(table.rules_text())["http"]["routers"] == {
        "router_user_a": {"rule": "PathPrefix(`/user/a/`)", "service": "service_user_a"}}
    assert table.route("router_user_a")["target"] == "http://127.0.0.1:1"
