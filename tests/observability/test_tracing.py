"""OpenTelemetry spans, recorded by the real SDK (TracerProvider + InMemorySpanExporter)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from io import StringIO

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connection, connections, transaction
from django.test import override_settings
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from django_cachestrat import drain, tracing
from django_cachestrat.breaker import breaker
from django_cachestrat.client import connection as redis_connection
from tests.factories import ItemFactory, ProfileFactory, TeamFactory
from tests.servers import free_port
from tests.testapp.models import Item, Profile, Team

pytestmark = pytest.mark.django_db

_exporter = InMemorySpanExporter()
_processors: list[SimpleSpanProcessor] = []


@pytest.fixture(autouse=True)
def provider() -> None:
    # Once per process: the global provider can be set only once, and pytest-django runs
    # transactional tests after the others, so a module fixture may be set up twice.
    if _processors:
        return
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        current = TracerProvider()
        trace.set_tracer_provider(current)
    _processors.append(SimpleSpanProcessor(_exporter))
    current.add_span_processor(_processors[0])


@pytest.fixture
def spans(settings) -> Iterator[InMemorySpanExporter]:
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True}}
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def ours(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith("cachestrat.")]


def names(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in ours(exporter)]


def test_a_miss_makes_a_fill_span_under_the_callers_span(spans):
    team = TeamFactory()
    spans.clear()  # the insert's invalidation
    tracer = trace.get_tracer("tests")
    with tracer.start_as_current_span("request") as request:
        Team.cached.get(pk=team.pk)
    (fill,) = ours(spans)
    assert fill.name == "cachestrat.fill"
    assert fill.parent is not None
    assert fill.parent.span_id == request.get_span_context().span_id
    assert fill.context.trace_id == request.get_span_context().trace_id
    kwargs = redis_connection().connection_pool.connection_kwargs
    assert dict(fill.attributes) == {
        "db.system.name": "redis",
        "db.operation.name": "fill",
        "server.address": kwargs["host"],
        "server.port": kwargs["port"],
        "db.namespace": str(kwargs["db"]),
        "cachestrat.model": "testapp.team",
        "cachestrat.rows": 1,
    }
    assert fill.status.status_code == StatusCode.UNSET


def test_a_lookup_miss_names_its_field(spans):
    profile = ProfileFactory(username="spanned")
    Profile.cached.get(username="spanned")
    fills = [s for s in ours(spans) if s.attributes.get("cachestrat.lookup") == "username"]
    assert len(fills) == 1 and fills[0].attributes["cachestrat.model"] == "testapp.profile"
    assert profile.pk


def test_a_hit_makes_no_span_unless_reads_are_asked_for(spans, settings):
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    spans.clear()
    Team.cached.get(pk=team.pk)
    Team.cached.get_many([team.pk])
    assert names(spans) == []
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True, "READS": True}}
    Team.cached.get(pk=team.pk)
    Team.cached.get_many([team.pk])
    assert names(spans) == ["cachestrat.get", "cachestrat.get_many"]
    assert {s.attributes["cachestrat.model"] for s in ours(spans)} == {"testapp.team"}


def test_reads_spans_hold_the_fill_of_a_miss(spans, settings):
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True, "READS": True}}
    team = TeamFactory()
    spans.clear()  # the insert's invalidation
    Team.cached.get(pk=team.pk)
    fill, read = ours(spans)
    assert (fill.name, read.name) == ("cachestrat.fill", "cachestrat.get")
    assert fill.parent.span_id == read.context.span_id


@pytest.mark.django_db(transaction=True)  # the async misses read on a thread of their own
def test_async_reads_make_read_spans_too(spans, settings):
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True, "READS": True}}
    team, cold, item = TeamFactory(), TeamFactory(), ItemFactory(code="t1")
    Team.cached.get(pk=team.pk)
    Item.cached.get(code="t1")
    spans.clear()

    async def read() -> None:  # a loop of its own: hits are served on it
        await Team.cached.aget(pk=team.pk)
        await Item.cached.aget(code=item.code)
        await Team.cached.aget_many([team.pk])
        await Team.cached.aget(pk=cold.pk)
        await sync_to_async(connections.close_all)()  # the miss's thread

    asyncio.run(read())
    assert names(spans) == [
        "cachestrat.get",
        "cachestrat.get",
        "cachestrat.get_many",
        "cachestrat.fill",
        "cachestrat.get",
    ]
    fill, read_span = ours(spans)[3:]
    assert fill.parent.span_id == read_span.context.span_id
    models = [s.attributes["cachestrat.model"] for s in ours(spans)]
    assert models == ["testapp.team", "testapp.item", *["testapp.team"] * 3]


def test_a_row_that_does_not_exist_is_an_answer_not_an_error(spans, settings):
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True, "READS": True}}
    for _ in range(2):  # a miss, then the cached "no such row"
        with pytest.raises(Team.DoesNotExist):
            Team.cached.get(pk=999_999)
    with pytest.raises(Item.DoesNotExist):
        Item.cached.get(code="nothing")
    assert names(spans).count("cachestrat.get") == 3
    for span in ours(spans):
        assert span.status.status_code == StatusCode.UNSET, span.name
        assert "error.type" not in span.attributes


def test_tracing_off_makes_no_span(settings):
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": False, "READS": True}}
    _exporter.clear()
    assert not tracing.enabled and not tracing.reads
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    team.save()
    assert names(_exporter) == []


@pytest.mark.django_db(transaction=True)  # a real commit
def test_an_invalidation_is_sent_in_a_span_at_commit(spans):
    team = TeamFactory()
    spans.clear()
    with transaction.atomic():
        team.name = "renamed"
        team.save()
        assert names(spans) == []  # nothing is sent before the commit
    (sent,) = ours(spans)
    assert sent.name == "cachestrat.invalidate"
    assert sent.attributes["db.operation.name"] == "invalidate"
    assert list(sent.attributes["cachestrat.models"]) == ["testapp.team"]
    assert sent.attributes["cachestrat.keys"] >= 1


def test_a_redis_failure_sets_the_error_status(spans, settings):
    team = TeamFactory()
    closed = {
        "BACKEND": "django_redis.cache.RedisCache",
        "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
    }
    cachestrat = {**settings.CACHESTRAT, "CACHE_ALIAS": "closed"}
    try:
        with override_settings(CACHES={**settings.CACHES, "closed": closed}, CACHESTRAT=cachestrat):
            spans.clear()
            Team.cached.invalidate(team.pk)  # autocommit: sent now, and Redis refuses it
            (failed,) = ours(spans)
    finally:
        breaker.reset()
    assert failed.name == "cachestrat.invalidate"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "ConnectionError"
    assert failed.attributes["server.port"] == int(closed["LOCATION"].split(":")[2][:-2])
    assert any(event.name == "exception" for event in failed.events)


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_a_write_behind_flush_makes_a_span_per_batch(spans):
    profile = ProfileFactory()
    Profile.cached.incr(profile.pk, "likes", by=4)
    spans.clear()
    drain.drain_all()
    (flushed,) = [s for s in ours(spans) if s.name == "cachestrat.flush"]
    assert flushed.attributes["cachestrat.model"] == "testapp.profile"
    assert flushed.attributes["cachestrat.increments"] == 4
    assert isinstance(flushed.attributes["cachestrat.stripe"], int)


@pytest.mark.django_db(transaction=True)  # the outbox is read by another transaction
def test_consuming_outside_writes_makes_a_span(spans):
    call_command("cachestrat_external_writes", "install", stdout=StringIO())
    try:
        team = TeamFactory()
        with connection.cursor() as cursor:
            cursor.execute("UPDATE testapp_team SET name = 'x' WHERE id = %s", [team.pk])
        spans.clear()
        call_command("cachestrat_external_writes", "consume", "--once", stdout=StringIO())
    finally:
        call_command("cachestrat_external_writes", "uninstall", stdout=StringIO())
    consumed = [s for s in ours(spans) if s.name == "cachestrat.consume"]
    assert consumed and consumed[0].attributes["cachestrat.database"] == "default"
    assert consumed[0].attributes["cachestrat.rows"] >= 1
    invalidate = [s for s in ours(spans) if s.name == "cachestrat.invalidate"]
    assert invalidate[0].parent.span_id == consumed[0].context.span_id


def test_a_missing_library_leaves_the_cached_models_wired(settings, monkeypatch):
    from django_cachestrat import hooks

    monkeypatch.setitem(sys.modules, "opentelemetry", None)  # as if not installed
    settings.CACHESTRAT = {**settings.CACHESTRAT, "TRACING": {"ENABLED": True}}
    assert hooks.failure() is None and not tracing.enabled
    team = TeamFactory(name="before")
    assert Team.cached.get(pk=team.pk).name == "before"
    team.name = "after"
    team.save()
    assert Team.cached.get(pk=team.pk).name == "after"  # the write was seen
