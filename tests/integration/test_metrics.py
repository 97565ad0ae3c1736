"""Metrics as a site would wire them: the shipped metrics.py drop-in, `--metrics-port` for traefik, and a
real Prometheus (Debian's package, inside the container) scraping both; a spawn is counted.

Its own install; the module ends by purging it.
"""
from __future__ import annotations

import time

import pytest
import requests

from tests.integration.helpers import (BASE_URL, HUB, MEASUREMENTS, PASSWORD, PREFIX, USER, bootstrap_cmd, wait_until)
from tests.integration.hubclient import HubUser, auth_header

METRICS_PORT = 28082
USAGE_REFRESH_S = 5  # the hub gathers usage every minute by default
PROMETHEUS = "http://127.0.0.1:29090"
TOKEN_FILE = "/etc/barehub/prometheus-token"
SCRAPE = f"""
global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: jupyterhub
    metrics_path: /hub/metrics
    authorization: {{credentials_file: {TOKEN_FILE}}}
    static_configs: [{{targets: ["127.0.0.1:8081"]}}]
  - job_name: traefik
    static_configs: [{{targets: ["127.0.0.1:{METRICS_PORT}"]}}]
"""


@pytest.fixture(scope="module")
def metrics_install(container):
    if container.run(f"test -d {PREFIX}", check=False).returncode == 0:
        container.run(f"barehub uninstall --prefix {PREFIX} --purge")
    container.run(f"mkdir -p /etc/barehub && openssl rand -hex 32 > {TOKEN_FILE} && chmod 600 {TOKEN_FILE}")
    container.run(f"mkdir -p {PREFIX}/jupyterhub_config.d && "
                  f"cp /mnt/src/jupyterhub_config.d/metrics.py {PREFIX}/jupyterhub_config.d/70-metrics.py")
    container.run(f"cat > {PREFIX}/jupyterhub_config.d/71-usage.py", input=f"c.Barehub.usage_refresh = {USAGE_REFRESH_S}\n")
    proc = container.run(bootstrap_cmd("--metrics-port", str(METRICS_PORT)), check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    container.run("mkdir -p /tmp/prometheus && cat > /tmp/prometheus/prometheus.yml", input=SCRAPE)
    container.run("systemd-run --unit=test-prometheus prometheus --config.file=/tmp/prometheus/prometheus.yml "
                  "--storage.tsdb.path=/tmp/prometheus/data --web.listen-address=127.0.0.1:29090")
    yield
    container.run("systemctl stop test-prometheus", check=False)
    container.run(f"barehub uninstall --prefix {PREFIX} --purge", check=False)


def query(expr: str) -> list[dict]:
    r = requests.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def value(expr: str) -> float | None:
    try:
        result = query(expr)
    except requests.RequestException:
        return None
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_the_hub_and_traefik_and_sees_a_spawn(container, metrics_install):
    start = time.monotonic()
    wait_until(lambda: value('up{job="jupyterhub"}') == 1 and value('up{job="traefik"}') == 1, 60, interval=1)
    MEASUREMENTS["Prometheus: first good scrape of hub and traefik (s)"] = round(time.monotonic() - start, 1)
    spawns = 'sum(jupyterhub_server_spawn_duration_seconds_count{status="success"})'
    before = value(spawns) or 0.0
    alice = HubUser(BASE_URL, USER, PASSWORD)
    assert alice.login().status_code == 302
    alice.spawn()
    wait_until(lambda: (value(spawns) or 0.0) >= before + 1, 30, interval=1)
    # the buckets reach Slurm queue waits; traefik counts the spawn's requests per entrypoint only
    assert query('jupyterhub_server_spawn_duration_seconds_bucket{le="172800.0"}')
    assert value('sum(traefik_entrypoint_requests_total{entrypoint="web"})') > 0
    assert query("traefik_service_requests_total") == []  # no per-user labels for local users to read


def test_hub_metrics_need_the_read_metrics_token(container, metrics_install):
    url = "http://127.0.0.1:8081/hub/metrics"
    assert requests.get(url, timeout=10).status_code == 403
    alice = HubUser(BASE_URL, USER, PASSWORD)
    assert alice.login().status_code == 302
    assert requests.get(url, headers=alice.auth(), timeout=10).status_code == 403
    token = container.run(f"cat {TOKEN_FILE}").stdout.strip()
    assert requests.get(url, headers=auth_header(token), timeout=10).status_code == 200  # the scraper's token
    listening = [line.split()[3] for line in container.run(f"ss -Hltn 'sport = :{METRICS_PORT}'").stdout.splitlines()]
    assert listening == [f"127.0.0.1:{METRICS_PORT}"]  # traefik's metrics on loopback only
    assert container.run(f"systemctl is-active {HUB}").stdout.strip() == "active"


def test_prometheus_sees_each_users_usage_and_answers_the_readmes_query(container, metrics_install):
    """The usage counters (barehub.usage_hub) per user and group, live from a running server's cgroup; the query
    docs/usage.md gives for "GPU hours per group this month" answers (0 GPU hours: a local server has none)."""
    alice = HubUser(BASE_URL, USER, PASSWORD)
    assert alice.login().status_code == 302
    alice.spawn()
    group = container.run(f"id -gn {USER}").stdout.strip()
    wall = f'barehub_usage_wall_seconds_total{{user="{USER}",group="{group}"}}'
    wait_until(lambda: value(wall) is not None, 60, interval=1)
    first = value(wall)
    assert value("barehub_usage_up") == 1
    wait_until(lambda: (value(wall) or 0) > first, 30, interval=1)  # counting while it runs
    per_group = query("sum by (group) (barehub_usage_gpu_seconds_total) / 3600")
    assert {(r["metric"]["group"], float(r["value"][1])) for r in per_group} >= {(group, 0.0)}
    assert value(f'barehub_usage_sessions_total{{user="{USER}"}}') >= 1
