"""Metrics and spans on a Redis Cluster: one memory figure per primary, no server address."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client, override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from redis import Redis

from django_cachestrat.breaker import breaker
from django_cachestrat.client import connection
from django_cachestrat.pending import pending
from tests import cluster as servers
from tests.factories import TeamFactory
from tests.servers import LocalCluster
from tests.testapp.models import Team

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(str(tmp_path_factory.mktemp("cluster")))
    try:
        cluster.start()
        servers.running["cluster"] = cluster
        yield cluster
    finally:
        servers.running.pop("cluster", None)
        cluster.stop()


@pytest.fixture
def on_cluster(local_cluster: LocalCluster) -> Iterator[LocalCluster]:
    servers.flush_cluster(local_cluster)
    cachestrat = {
        **settings.CACHESTRAT,
        "CONNECTION": "tests.cluster.cluster_client",
        "METRICS": True,
        "TRACING": {"ENABLED": True},
    }
    with override_settings(CACHESTRAT=cachestrat):
        breaker.reset()
        pending.clear()
        yield local_cluster
        connection().close()  # its sockets, before the settings change forgets it
    breaker.reset()
    pending.clear()


def primaries(cluster: LocalCluster) -> set[str]:
    found = set()
    for port in cluster.live_ports():
        with Redis(port=port) as node:
            if node.info("replication")["role"] == "master":
                found.add(f"127.0.0.1:{port}")
    return found


def test_redis_memory_is_shown_per_primary(on_cluster: LocalCluster) -> None:
    text = Client().get("/metrics").content.decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    used = {s.labels["node"]: s.value for s in samples if s.name.endswith("used_memory_bytes")}
    assert set(used) == primaries(on_cluster) and len(used) == 3
    assert all(value > 0 for value in used.values())
    assert [s.value for s in samples if s.name == "cachestrat_redis_up"] == [1]


def test_a_fill_span_on_a_cluster_names_no_server(on_cluster: LocalCluster) -> None:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # set once per process (test_tracing.py)
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    processor = SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    try:
        team = TeamFactory()
        exporter.clear()
        Team.cached.get(pk=team.pk)
    finally:
        processor.shutdown()  # this exporter takes no more spans
    (fill,) = [s for s in exporter.get_finished_spans() if s.name == "cachestrat.fill"]
    assert fill.attributes["db.system.name"] == "redis"
    assert "server.address" not in fill.attributes
