"""Prometheus metrics: the statistics as prometheus-client exports them, read back parsed."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client, override_settings
from prometheus_client.parser import text_string_to_metric_families

from django_cachestrat import drain, metrics, stats
from django_cachestrat.breaker import breaker
from tests.factories import ProfileFactory, TeamFactory
from tests.servers import RedisServer, free_port
from tests.testapp.models import Profile, Team

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def metrics_on(settings) -> Iterator[None]:
    stats.reset()
    breaker.reset()
    settings.CACHESTRAT = {**settings.CACHESTRAT, "METRICS": True}
    yield
    breaker.reset()


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``{(sample name, sorted labels): value}`` of one scrape of the metrics view."""
    response = Client().get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.content.decode())
        for s in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_reads_are_counted_per_model():
    team = TeamFactory()
    before = scrape()
    Team.cached.get(pk=team.pk)  # a miss, filled
    for _ in range(3):
        Team.cached.get(pk=team.pk)
    after = scrape()
    for name, gained in (("hits", 3), ("misses", 1), ("fills", 1)):
        sample = f"cachestrat_{name}_total"
        assert (
            value(after, sample, model="testapp.team") - value(before, sample, model="testapp.team")
            == gained
        ), name


def test_reads_after_a_statistics_reset_are_still_counted():
    team = TeamFactory()
    for _ in range(4):
        Team.cached.get(pk=team.pk)
    before = value(scrape(), "cachestrat_hits_total", model="testapp.team")
    stats.reset()  # the process's counters start again from zero
    Team.cached.get(pk=team.pk)
    Team.cached.get(pk=team.pk)
    after = value(scrape(), "cachestrat_hits_total", model="testapp.team")
    assert after - before == 2


def test_a_scrape_of_the_default_registry_is_up_to_date():
    """As django-prometheus's view or prometheus-client's own server would scrape it."""
    from prometheus_client import REGISTRY

    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    label = {"model": "testapp.team"}
    before = REGISTRY.get_sample_value("cachestrat_hits_total", label) or 0
    Team.cached.get(pk=team.pk)
    Team.cached.get(pk=team.pk)
    assert REGISTRY.get_sample_value("cachestrat_hits_total", label) == before + 2


def test_hit_miss_and_fill_times_are_sampled_into_histograms():
    team = TeamFactory()
    before = scrape()
    Team.cached.get(pk=team.pk)
    for _ in range(5):
        Team.cached.get(pk=team.pk)
    stats.publish()  # hands this interval's samples over, as the statistics thread does
    after = scrape()
    label = {"model": "testapp.team"}
    gained = {
        kind: value(after, f"cachestrat_{kind}_seconds_count", **label)
        - value(before, f"cachestrat_{kind}_seconds_count", **label)
        for kind in ("hit", "fill", "miss")
    }
    assert gained == {"hit": 5, "fill": 1, "miss": 1}
    assert value(after, "cachestrat_miss_seconds_sum", **label) > value(
        before, "cachestrat_miss_seconds_sum", **label
    )
    assert value(after, "cachestrat_hit_seconds_sum", **label) > value(
        before, "cachestrat_hit_seconds_sum", **label
    )
    # Every hit on loopback Redis takes under a second: all in the last finite bucket.
    assert value(after, "cachestrat_hit_seconds_bucket", le="1.0", **label) == value(
        after, "cachestrat_hit_seconds_count", **label
    )


def test_invalidations_and_flushes_are_counted():
    team = TeamFactory()
    before = scrape()
    team.save()
    Team.cached.flush(using="default")  # one namespace: one flush
    after = scrape()
    label = {"model": "testapp.team"}
    for name in ("invalidations", "flushes"):
        sample = f"cachestrat_{name}_total"
        assert value(after, sample, **label) > value(before, sample, **label), name
    assert (
        value(after, "cachestrat_flushes_total", **label)
        - value(before, "cachestrat_flushes_total", **label)
        == 1
    )


def test_rejected_fills_and_lease_waits_are_exported():
    team = TeamFactory()

    def invalidate_during_the_fill(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("SELECT") and "testapp_team" in sql:
            Team.cached.invalidate(team.pk)  # a write lands while the row is read
        return result

    before = scrape()
    with connection.execute_wrapper(invalidate_during_the_fill):
        Team.cached.get(pk=team.pk)
    after = scrape()
    sample = "cachestrat_rejected_fills_total"
    assert (
        value(after, sample, model="testapp.team") - value(before, sample, model="testapp.team")
        == 1
    )


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_write_behind_backlog_flushes_and_dead_letters():
    kept, gone = ProfileFactory(), ProfileFactory()
    Profile.cached.incr(kept.pk, "likes", by=3)
    Profile.cached.incr(gone.pk, "likes", by=2)
    label = {"model": "testapp.profile"}
    backlog = scrape()
    assert value(backlog, "cachestrat_write_behind_pending", **label) == 2
    assert value(backlog, "cachestrat_write_behind_batch_age_seconds", **label) == 0
    dead_before = value(backlog, "cachestrat_write_behind_dead_letters_total", **label)
    flushed_before = value(backlog, "cachestrat_write_behind_flushed_total", **label)
    gone.delete()
    drain.drain_all()
    after = scrape()
    assert value(after, "cachestrat_write_behind_pending", **label) == 0
    assert value(after, "cachestrat_write_behind_flushed_total", **label) - flushed_before == 5
    assert value(after, "cachestrat_write_behind_dead_letters_total", **label) - dead_before == 1
    assert value(after, "cachestrat_dead_letters", **label) == 1  # rows in the table


def test_redis_memory_per_node_and_up():
    samples = scrape()
    port = connection_port()
    node = f"127.0.0.1:{port}"
    assert value(samples, "cachestrat_redis_up") == 1
    assert value(samples, "cachestrat_redis_used_memory_bytes", node=node) > 0
    assert ("cachestrat_redis_maxmemory_bytes", (("node", node),)) in samples


def test_a_redis_on_a_unix_socket_is_named_by_its_path(tmp_path):
    socket_path = str(tmp_path / "redis.sock")
    server = RedisServer("--unixsocket", socket_path)
    server.start()
    caches = {"default": {**server.caches()["default"], "LOCATION": f"unix://{socket_path}"}}
    try:
        with override_settings(CACHES=caches):
            samples = scrape()
    finally:
        server.stop()
    assert value(samples, "cachestrat_redis_up") == 1
    assert value(samples, "cachestrat_redis_used_memory_bytes", node=f"unix:{socket_path}") > 0


def connection_port() -> int:
    from django_cachestrat.client import connection as redis_connection

    return int(redis_connection().connection_pool.connection_kwargs["port"])


def test_redis_down_shows_errors_and_an_open_breaker(settings):
    team = TeamFactory()
    closed = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
    before = scrape()
    cachestrat = {**settings.CACHESTRAT, "CACHE_ALIAS": "closed", "BREAKER_THRESHOLD": 2}
    with override_settings(CACHES={**settings.CACHES, "closed": closed}, CACHESTRAT=cachestrat):
        for _ in range(3):
            assert Team.cached.get(pk=team.pk).name == team.name  # from the database
        during = scrape()
    assert value(during, "cachestrat_redis_up") == 0
    assert value(during, "cachestrat_breaker_open", node="all") == 1
    assert (
        value(during, "cachestrat_redis_errors_total")
        - value(before, "cachestrat_redis_errors_total")
        >= 2
    )
    assert (
        value(during, "cachestrat_breaker_trips_total")
        - value(before, "cachestrat_breaker_trips_total")
        == 1
    )
    breaker.reset()
    assert value(scrape(), "cachestrat_breaker_open", node="all") == 0


def test_labels_name_models_and_nodes_never_keys():
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    Profile.cached.incr(ProfileFactory().pk, "likes")
    ours = {key: v for key, v in scrape().items() if key[0].startswith("cachestrat_")}
    assert ours
    for _, labels in ours:
        for name, text in labels:
            assert name in ("model", "node", "le"), name
            assert "{" not in text and not text.startswith("cs"), text


def test_the_view_is_not_found_while_metrics_are_off(settings):
    settings.CACHESTRAT = {**settings.CACHESTRAT, "METRICS": False}
    assert not metrics.is_installed()
    assert Client().get("/metrics").status_code == 404


def test_the_docs_and_the_dashboard_name_only_exported_metrics():
    import re
    from pathlib import Path

    text = Client().get("/metrics").content.decode()
    names = set()
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("", "_bucket", "_count", "_sum")}
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
    docs = Path(__file__).parents[2] / "docs"
    for page in ("operations.md", "grafana-dashboard.json"):
        named = set(re.findall(r"\bcachestrat_[a-z_]+[a-z]", (docs / page).read_text()))
        named = {n for n in named if n != "cachestrat_stats"}  # the management command
        assert named and named <= names, (page, named - names)
    table = (docs / "operations.md").read_text()
    listed = {
        n
        for n in names
        if n.startswith("cachestrat_") and not n.endswith(("_bucket", "_count", "_sum", "_created"))
    }
    assert [n for n in sorted(listed) if f"`{n}`" not in table] == []


def _exported_hits(label: str) -> float:
    """The hits counter as prometheus-client holds it, read without a scrape (a scrape
    would sync first)."""
    counter = metrics._get().counters["hits"]
    samples = [s for family in counter.collect() for s in family.samples]
    return next(
        (s.value for s in samples if s.name.endswith("_total") and s.labels["model"] == label),
        0.0,
    )


def test_a_hit_exports_nothing_until_the_statistics_thread_syncs():
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    metrics.sync()
    exported = _exported_hits("testapp.team")
    Team.cached.get(pk=team.pk)
    assert _exported_hits("testapp.team") == exported  # the hit only counted in ModelStats
    assert metrics.sync in stats.on_tick
    for hook in stats.on_tick:  # what the statistics thread runs every PUBLISH_EVERY s
        hook()
    assert _exported_hits("testapp.team") == exported + 1


def _sync_and_count_in_a_child(done: Any) -> None:
    metrics.sync()  # the lock the parent held at the fork is not held here
    stats.stats_for("testapp.forked")  # nor is the statistics' own
    done.set()


@pytest.mark.parametrize("lock", ["metrics", "stats"])
def test_a_fork_while_a_lock_is_held_leaves_the_child_free(lock):
    # Another thread of the parent (the statistics thread syncing, a first read of a
    # model) may hold a lock at the very moment a server forks a worker.
    metrics.install()
    fork = multiprocessing.get_context("fork")
    done = fork.Event()
    held = {"metrics": metrics._lock, "stats": stats._lock}[lock]
    with held:
        child = fork.Process(target=_sync_and_count_in_a_child, args=(done,))
        child.start()
    finished = done.wait(10)
    child.kill()
    child.join(10)
    assert finished, "the child hung on a lock held at the fork"
