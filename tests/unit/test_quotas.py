"""Quotas (barehub.quotas) and the hub's usage book: the quota gate at spawn, the metrics (barehub.usage_hub)."""
from __future__ import annotations

import asyncio
import logging
import time
import types

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from tornado import web
from traitlets import TraitError
from traitlets.config import Config

from barehub import quotas, usage_hub, usage_sources
from barehub.base.errors import BarehubError
from barehub.hub_config import Barehub
from barehub.usage import HOUR, Session, this_month

NOW = time.time()
MONTH = this_month(NOW)


def used(user="ann", group="physics", cpu_hours=0.0, gpus=0, hours=1.0, start=None):
    start = MONTH.since + 60 if start is None else start
    return Session("slurm", f"{user}{start}{cpu_hours}", user, group, "", start, start + hours * HOUR,
                   cpu_hours * HOUR, gpus)


QUOTAS = quotas.parse({"group:physics": {"cpu_hours": 10, "gpu_hours": 2}, "user:bob": {"cpu_hours": 1}})


def test_a_group_whose_gpu_hours_are_used_up_gets_no_gpu_server_but_may_still_use_cpus():
    sessions = [used("ann", gpus=1, hours=1.5, cpu_hours=1), used("cid", gpus=1, hours=0.5)]  # 2 GPU hours
    standing = quotas.standings(QUOTAS, "dan", "physics", sessions, NOW)
    message = quotas.refusal(standing, wants_gpus=True)
    assert message.startswith("Quota reached: your group physics has used 2.0 of its 2 GPU hours this month.")
    assert f"resets on {quotas.iso(MONTH.until)[:10]} 00:00:00 UTC" in message
    assert quotas.refusal(standing, wants_gpus=False) is None


def test_a_users_own_quota_counts_only_her_sessions_and_last_months_do_not_count():
    sessions = [used("bob", cpu_hours=0.6), used("ann", cpu_hours=5),
                used("bob", cpu_hours=9, start=MONTH.since - 5 * HOUR)]  # last month's
    standing = quotas.standings(QUOTAS, "bob", "chem", sessions, NOW)
    assert [(s.quota.who, round(s.cpu_hours, 2)) for s in standing] == [("user:bob", 0.6)]
    assert quotas.refusal(standing, wants_gpus=False) is None
    sessions.append(used("bob", cpu_hours=0.5))
    message = quotas.refusal(quotas.standings(QUOTAS, "bob", "chem", sessions, NOW), wants_gpus=False)
    assert message.startswith("Quota reached: you have used 1.1 of your 1 CPU hours this month.")


@pytest.mark.parametrize("value, words", [
    ({"physics": {"cpu_hours": 1}}, "c.Barehub.quotas['physics']: a quota is for 'group:NAME' or 'user:NAME'"),
    ({"group:physics": {"gpus": 1}}, "c.Barehub.quotas['group:physics']['gpus'] is not a limit"),
    ({"group:physics": {"cpu_hours": -1}}, "must be a number of hours >= 0, not -1"),
    ({"user:ann": {"cpu_hours": "10"}}, "must be a number of hours >= 0, not '10'")])
def test_a_wrong_quota_is_refused_when_the_config_loads_naming_it(value, words):
    c = Config()
    c.Barehub.quotas = value
    with pytest.raises(TraitError, match=words.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(")
                       .replace(")", r"\)")):
        Barehub(config=c)


class FakeBook(usage_hub.UsageBook):
    def __init__(self, sessions, quota_list=QUOTAS, quota_admins=False, fails=""):
        super().__init__(None, quota_list, quota_admins, logging.getLogger("test"))
        self.found, self.fails, self.gathered = sessions, fails, 0

    async def gather(self):
        self.gathered += 1
        self.gathered_at = time.time()
        self.error = self.fails
        if not self.fails:
            self.sessions = self.found


def spawner(name, admin=False, gres=""):
    user = types.SimpleNamespace(name=name, admin=admin)
    return types.SimpleNamespace(user=user, req_gres=gres, log=logging.getLogger("test"), _log_name=name)


@pytest.fixture
def groups(monkeypatch):
    monkeypatch.setattr(usage_hub, "primary_group", lambda user: {"bob": "chem"}.get(user, "physics"))


def test_the_gate_refuses_a_gpu_spawn_past_the_quota_spares_admins_and_lets_spawns_go_when_accounting_is_down(
        groups):
    sessions = [used("ann", gpus=2, hours=1.5)]
    book = FakeBook(sessions)
    assert "GPU hours" in asyncio.run(book.refusal(spawner("dan", gres="gpu:1")))
    assert asyncio.run(book.refusal(spawner("dan"))) is None
    assert asyncio.run(book.refusal(spawner("dan", admin=True, gres="gpu:1"))) is None
    assert "GPU hours" in asyncio.run(FakeBook(sessions, quota_admins=True).refusal(
        spawner("dan", admin=True, gres="gpu:1")))
    assert asyncio.run(FakeBook(sessions, fails="slurmdbd down").refusal(spawner("dan", gres="gpu:1"))) is None
    assert book.gathered == 1  # the second spawn within the minute reads the same book


def test_the_gate_runs_before_the_sites_own_pre_spawn_hook_for_every_spawner_class(groups, monkeypatch):
    from jupyterhub.spawner import LocalProcessSpawner, Spawner

    from barehub import unix_accounts

    monkeypatch.setattr(Spawner, "run_pre_spawn_hook", Spawner.run_pre_spawn_hook)
    monkeypatch.setattr(unix_accounts, "refuse_system_account", lambda spawner: None)  # "dan" has no account here
    usage_hub.install_quota_gate(FakeBook([used("ann", gpus=2, hours=1.5)]))
    ran = []
    gpu = LocalProcessSpawner(pre_spawn_hook=lambda s: ran.append(s.user.name))
    gpu.user, gpu.req_gres = types.SimpleNamespace(name="dan", admin=False), "gpu:1"
    with pytest.raises(web.HTTPError) as e:
        asyncio.run(gpu.run_pre_spawn_hook())
    assert e.value.status_code == 403 and "your group physics has used 3.0 of its 2 GPU hours" in e.value.log_message
    assert e.value.jupyterhub_message == e.value.log_message  # the spawn page says it, not "Failed to start"
    cpu = LocalProcessSpawner(pre_spawn_hook=lambda s: ran.append(s.user.name))
    cpu.user = types.SimpleNamespace(name="dan", admin=False)
    asyncio.run(cpu.run_pre_spawn_hook())
    assert ran == ["dan"]


def test_metrics_count_the_month_per_user_and_group_and_say_when_a_source_is_down():
    book = FakeBook([used("ann", cpu_hours=1, gpus=1, hours=2), used("bob", "chem", cpu_hours=0.5)])
    asyncio.run(book.refresh())
    registry = CollectorRegistry()
    registry.register(usage_hub.UsageCollector(book))
    text = generate_latest(registry).decode()
    assert 'barehub_usage_gpu_seconds_total{group="physics",user="ann"} 7200.0' in text
    assert 'barehub_usage_cpu_seconds_total{group="chem",user="bob"} 1800.0' in text
    assert "barehub_usage_up 1.0" in text
    book.fails, book.found = "Slurm's accounting (slurmdbd) did not answer", []
    asyncio.run(book.refresh())
    text = generate_latest(registry).decode()
    assert "barehub_usage_up 0.0" in text and 'user="ann"} 7200.0' in text  # the last figures, not zeros


def test_the_book_gathers_the_sources_once_for_a_month(monkeypatch, prefix):
    calls = []

    def gather(paths, window, now, source="all", **_):
        calls.append(window)
        if len(calls) > 1:
            raise BarehubError("slurmdbd down")
        return usage_sources.Gathered([used()])

    monkeypatch.setattr(usage_sources, "gather", gather)
    book = usage_hub.UsageBook(prefix, [], False, logging.getLogger("test"))
    assert len(asyncio.run(book.month())) == 1 and len(asyncio.run(book.month())) == 1 and len(calls) == 1
    with pytest.raises(BarehubError, match="slurmdbd down"):
        asyncio.run(book.month(max_age=0))
    assert len(book.sessions) == 1 and book.error == "slurmdbd down"  # the last good figures stay
