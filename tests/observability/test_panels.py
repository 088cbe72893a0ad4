"""The debug toolbar panel, through the real toolbar: figures per request, stored as JSON."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from debug_toolbar.store import get_store
from debug_toolbar.toolbar import DebugToolbar
from django.db import connections
from django.test import AsyncClient, Client, override_settings

from django_cachestrat import requestlog
from django_cachestrat.breaker import breaker
from tests import toolbar_urls
from tests.factories import ItemFactory, ProfileFactory
from tests.testapp.models import Item

pytestmark = pytest.mark.django_db(transaction=True)

PANEL = "CachestratPanel"


@pytest.fixture(autouse=True)
def toolbar() -> Iterator[None]:
    # RENDER_PANELS off: the panel is read back from the toolbar's store, as a browser does.
    config = {"RENDER_PANELS": False}
    with override_settings(
        DEBUG=True, ROOT_URLCONF="tests.toolbar_urls", DEBUG_TOOLBAR_CONFIG=config
    ):
        yield
    toolbar_urls.barrier = toolbar_urls.abarrier = None


def request_id(response: Any) -> str:
    found = re.search(r'data-request-id="([0-9a-f]+)"', response.content.decode())
    assert found, "the toolbar was not rendered"
    return found.group(1)


def stored(response: Any) -> dict[str, Any]:
    """The panel's figures as the toolbar's store gives them back (JSON, deserialized)."""
    data: dict[str, Any] = get_store().panel(request_id(response), PANEL)
    return data


def rendered(client: Client, response: Any) -> str:
    """The panel's HTML as the toolbar's JavaScript fetches it."""
    query = {"request_id": request_id(response), "panel_id": PANEL}
    content: str = client.get("/__debug__/render_panel/", query).json()["content"]
    return content


def figures(response: Any, label: str = "testapp.item") -> dict[str, int]:
    counts: dict[str, int] = stored(response)["models"][label]
    return counts


def cell(html: str, label: str, name: str) -> str:
    found = re.search(
        rf'<tr data-model="{re.escape(label)}">.*?class="{name}">([^<]*)<', html, re.S
    )
    assert found, f"{name} of {label} not shown"
    return found.group(1).strip()


def pks(*items: Any) -> str:
    return ",".join(str(item.pk) for item in items)


def test_reads_show_hits_misses_and_the_queries_saved() -> None:
    items = ItemFactory.create_batch(3)
    client = Client()
    first = client.get(f"/items/?pks={pks(*items)}")
    assert (figures(first)["hits"], figures(first)["misses"]) == (0, 3)
    assert figures(first)["queries_saved"] == 0
    second = client.get(f"/items/?pks={pks(*items)}")
    assert (figures(second)["hits"], figures(second)["misses"]) == (3, 0)
    assert figures(second)["queries_saved"] == 1  # one get_many, all hits: no query
    html = rendered(client, second)
    assert cell(html, "testapp.item", "hits") == "3"
    assert cell(html, "testapp.item", "misses") == "0"
    assert cell(html, "testapp.item", "queries-saved") == "1"
    assert cell(html, "", "hits") == "3"  # the totals row


def test_the_figures_are_json_and_survive_the_toolbars_store() -> None:
    items = ItemFactory.create_batch(2)
    client = Client()
    response = client.get(f"/items/?pks={pks(*items)}")
    data = stored(response)
    # Plain JSON, without the toolbar's lenient encoder that turns anything into a string.
    assert json.loads(json.dumps(data)) == data
    assert all(type(v) is int for v in data["totals"].values())
    assert data["breaker"] == {"state": "closed", "failures": 0, "trips": 0}
    again = DebugToolbar.fetch(request_id(response), PANEL)
    assert again is not None
    panel = again.get_panel_by_id(PANEL)
    assert panel.get_stats() == data
    assert panel.nav_subtitle == "0 hits, 2 misses"
    assert "testapp.item" in panel.content


def test_lookups_count_their_pointer_and_what_the_cache_saved() -> None:
    item = ItemFactory()
    client = Client()
    cold = figures(client.get(f"/code/{item.code}/"))
    # The pointer missed (one query for the pk) and so did the row (a second query).
    assert (cold["lookup_misses"], cold["misses"], cold["queries_saved"]) == (1, 1, -1)
    warm = figures(client.get(f"/code/{item.code}/"))
    assert (warm["lookup_hits"], warm["hits"], warm["queries_saved"]) == (1, 1, 1)
    client.get("/code/nothing/")
    absent = figures(client.get("/code/nothing/"))  # a cached "no such row"
    assert (absent["lookup_hits"], absent["hits"], absent["queries_saved"]) == (1, 0, 1)


def test_writes_show_invalidations_queued_and_sent_and_increments() -> None:
    items = ItemFactory.create_batch(2)
    ProfileFactory.create_batch(2)
    counts = stored(Client().get(f"/write/?pks={pks(*items)}"))["models"]
    assert counts["testapp.item"]["invalidations_queued"] == 2  # during the transaction
    assert counts["testapp.item"]["invalidations_sent"] == 2  # once, at commit
    assert counts["testapp.profile"]["increments"] == 2
    assert counts["testapp.profile"]["increment_total"] == 6


def test_an_async_view_is_recorded() -> None:
    items = ItemFactory.create_batch(3)
    response = async_to_sync(AsyncClient().get)(f"/aitems/?pks={pks(*items)}")
    assert response.status_code == 200
    counts = figures(response)
    assert (counts["misses"], counts["hits"], counts["queries_saved"]) == (3, 3, 1)


def test_async_hits_served_on_the_event_loop_are_recorded() -> None:
    # On a loop of its own (as under uvicorn), not inside async_to_sync: the hits are then
    # served by redis.asyncio on the loop, not by the sync path in a thread.
    items = ItemFactory.create_batch(3)
    Item.cached.get_many([item.pk for item in items])  # warm: every read below hits
    Item.cached.get(code=items[0].code)

    async def get(url: str) -> Any:
        return await AsyncClient().get(url)

    counts = figures(asyncio.run(get(f"/aitems/?pks={pks(*items)}")))
    assert (counts["misses"], counts["hits"], counts["queries_saved"]) == (0, 6, 2)
    counts = figures(asyncio.run(get(f"/acode/{items[0].code}/")))
    assert (counts["lookup_hits"], counts["hits"], counts["queries_saved"]) == (1, 1, 1)


def test_concurrent_threads_keep_their_own_figures() -> None:
    items = ItemFactory.create_batch(4)
    toolbar_urls.barrier = threading.Barrier(2, timeout=20)  # both views run at once
    responses: dict[str, Any] = {}

    def get(name: str, query: str) -> None:
        try:
            responses[name] = Client().get(f"/items/?pks={query}")
        finally:
            connections.close_all()

    threads = [
        threading.Thread(target=get, args=("three", pks(*items[:3]))),
        threading.Thread(target=get, args=("one", pks(items[3]))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert figures(responses["three"])["misses"] == 3
    assert figures(responses["one"])["misses"] == 1


def test_concurrent_async_requests_keep_their_own_figures() -> None:
    items = ItemFactory.create_batch(4)

    async def both() -> list[Any]:
        # Both views hold at the barrier, so their reads interleave in one event loop and
        # one sync_to_async thread: only a per-task context keeps the figures apart.
        toolbar_urls.abarrier = asyncio.Barrier(2)
        client = AsyncClient()
        return await asyncio.wait_for(
            asyncio.gather(
                client.get(f"/aitems/?pks={pks(*items[:3])}"),
                client.get(f"/aitems/?pks={pks(items[3])}"),
            ),
            timeout=30,
        )

    three, one = async_to_sync(both)()
    assert (figures(three)["misses"], figures(three)["hits"]) == (3, 3)
    assert (figures(one)["misses"], figures(one)["hits"]) == (1, 1)


def test_the_breaker_state_is_shown() -> None:
    item = ItemFactory()
    client = Client()
    breaker.failure(threshold=1, cooldown=60)
    try:
        response = client.get(f"/items/?pks={item.pk}")
    finally:
        breaker.reset()
    data = stored(response)
    assert data["breaker"]["state"] == "open"
    assert data["models"] == {}  # read from the database: the cache was not asked
    assert '<td class="breaker-state">open</td>' in rendered(client, response)


def test_nothing_is_recorded_outside_a_recording_block() -> None:
    item = ItemFactory()
    with override_settings(DEBUG=False):  # no toolbar: no panel records
        Client().get(f"/items/?pks={item.pk}")
    assert requestlog.active() is None
    with requestlog.recording() as log:
        Item.cached.get_many([item.pk])
        with requestlog.recording() as inner:
            Item.cached.get_many([item.pk])
        assert requestlog.active() is log
    assert requestlog.active() is None
    assert log.as_dict()["totals"]["hits"] == 1
    assert inner.as_dict()["totals"]["hits"] == 1


def test_a_held_lease_shows_as_waits_and_a_raced_fill_as_lost(redis_client) -> None:
    waited, raced = ItemFactory.create_batch(2)
    plan = Item.cached.plan
    row_key = plan.space("default").row(waited.pk)
    redis_client.set(plan.keys.lease(row_key), b"another-reader", px=5000)
    with override_settings(CACHESTRAT={"LEASE_WAIT": 0.5}), requestlog.recording() as log:
        Item.cached.get_many([waited.pk])  # waits for the other reader, then reads the db
    counts = log.as_dict()["models"]["testapp.item"]
    assert counts["misses"] == 1 and counts["lease_waits"] >= 1 and counts["lost_fills"] == 0

    def write_during_the_read(execute: Any, sql: str, *args: Any) -> Any:
        result = execute(sql, *args)
        if "SELECT" in sql:  # between the database read and the fill
            Item.cached.invalidate(raced.pk)
        return result

    with (
        requestlog.recording() as log,
        connections["default"].execute_wrapper(write_during_the_read),
    ):
        Item.cached.get_many([raced.pk])
    counts = log.as_dict()["models"]["testapp.item"]
    assert (counts["misses"], counts["lost_fills"], counts["invalidations_sent"]) == (1, 1, 1)
