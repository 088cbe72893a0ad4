"""Async reads: hits on the event loop through redis.asyncio, misses by the sync protocol."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from asgiref.sync import ThreadSensitiveContext, async_to_sync, sync_to_async
from django.db import connection, connections, transaction
from django.db.models.signals import post_init
from django.test import TestCase, override_settings
from django_redis import get_redis_connection
from redis import Redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from django_cachestrat import aclient, requestlog, signals
from django_cachestrat.breaker import breaker
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for
from tests.factories import ItemFactory, TeamFactory
from tests.servers import LocalCluster, RedisServer, free_port
from tests.testapp.models import Item, Team
from tests.topology.test_cluster import keys_by_node, local_cluster, local_sentinel, on_cluster

pytestmark = pytest.mark.django_db(transaction=True)  # worker threads see committed rows
# Fixtures of tests.topology.test_cluster.
__all__ = ["local_cluster", "local_sentinel", "on_cluster"]

T = TypeVar("T")


class Probe:
    """The SQL run on the loop's thread and on the sync_to_async worker, and the threads
    on which model instances were built (``post_init``, sent by ``from_db``)."""

    def __init__(self) -> None:
        self.sql: list[tuple[str, str]] = []
        self.built_on: list[str] = []

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.sql.append((threading.current_thread().name, sql))
        return execute(sql, params, many, context)

    def built(self, sender: Any, **kwargs: Any) -> None:
        self.built_on.append(threading.current_thread().name)

    def watch(self) -> None:
        connection.execute_wrappers.append(self)

    def unwatch(self) -> None:
        connection.execute_wrappers.remove(self)
        connections.close_all()

    @property
    def reads(self) -> list[str]:
        """The statements that read rows (a new connection may ask other things first)."""
        return [sql for _, sql in self.sql if '"testapp_' in sql]

    def reset(self) -> None:
        self.sql.clear()
        self.built_on.clear()


def run(body: Callable[[Probe], Awaitable[T]]) -> tuple[T, Probe]:
    """``body(probe)`` on a new event loop, with SQL watched on both threads; any error
    the loop reports (an async client that failed to close at shutdown, say) fails it."""
    probe = Probe()
    errors: list[dict[str, Any]] = []

    async def main() -> T:
        asyncio.get_running_loop().set_exception_handler(lambda _, context: errors.append(context))
        await sync_to_async(probe.watch)()
        probe.watch()
        post_init.connect(probe.built, weak=False, dispatch_uid="test_async")
        try:
            return await body(probe)
        finally:
            post_init.disconnect(dispatch_uid="test_async")
            connection.execute_wrappers.remove(probe)
            await sync_to_async(probe.unwatch)()

    result = asyncio.run(main())
    assert not errors, errors
    return result, probe


LOOP = threading.main_thread().name  # asyncio.run runs the loop on the calling thread


def test_a_hit_runs_no_sql_on_no_thread_but_the_loops():
    team, item = TeamFactory(name="a"), ItemFactory(code="c1")
    Team.cached.get(pk=team.pk)
    Item.cached.get(code="c1")
    plan_for(Team).stats.hits = 0

    async def body(probe: Probe) -> list[Any]:
        got = [await Team.cached.aget(pk=team.pk) for _ in range(3)]
        got.append(await Team.cached.aget_many([team.pk]))
        got.append(await Item.cached.aget(code="c1"))
        got.append(await Item.cached.aget(pk=item.pk))
        assert probe.built_on == [LOOP] * 6 and probe.sql == []
        # The observable tells the old way apart: sync_to_async builds it on a worker.
        probe.reset()
        await sync_to_async(Team.cached.get)(pk=team.pk)
        assert probe.built_on and LOOP not in probe.built_on
        return got

    got, _ = run(body)
    assert [g.name for g in got[:3]] == ["a"] * 3 and got[3][team.pk].name == "a"
    assert got[4].pk == got[5].pk == item.pk
    assert plan_for(Team).stats.hits == 5  # four async hits, one sync


def test_a_miss_fills_with_one_query_then_hits():
    team, item = TeamFactory(name="cold"), ItemFactory(code="cold")

    async def body(probe: Probe) -> None:
        assert (await Team.cached.aget(pk=team.pk)).name == "cold"
        assert len(probe.reads) == 1 and probe.sql[-1][0] != LOOP  # the sync path, in a thread
        probe.reset()
        assert (await Team.cached.aget(pk=team.pk)).name == "cold"
        assert probe.sql == [] and probe.built_on == [LOOP]
        assert (await Item.cached.aget(code="cold")).pk == item.pk
        assert len(probe.reads) == 2  # the lookup, then the row
        probe.reset()
        assert (await Item.cached.aget(code="cold")).pk == item.pk
        assert probe.sql == [] and probe.built_on == [LOOP]

    run(body)
    stats = plan_for(Team).stats
    assert (stats.hits, stats.misses, stats.fills) == (1, 1, 1)
    assert Team.cached.get(pk=team.pk).name == "cold"  # the sync path reads what was filled


def test_get_many_serves_hits_on_the_loop_and_the_rest_by_one_query():
    a, b, c = TeamFactory(name="a"), TeamFactory(name="b"), TeamFactory(name="c")
    Team.cached.get(pk=a.pk)

    async def body(probe: Probe) -> list[dict[Any, Team]]:
        first = await Team.cached.aget_many([a.pk, b.pk, c.pk, 999_999])
        assert len(probe.reads) == 1 and probe.built_on.count(LOOP) == 1  # a: on the loop
        probe.reset()
        second = await Team.cached.aget_many([a.pk, b.pk, c.pk, 999_999])
        assert probe.sql == []  # the absence of 999999 is cached too
        assert probe.built_on == [LOOP] * 3
        return [first, second]

    (first, second), _ = run(body)
    for rows in (first, second):
        assert {pk: row.name for pk, row in rows.items()} == {a.pk: "a", b.pk: "b", c.pk: "c"}
    assert plan_for(Team).stats.queries_saved == 1  # the second aget_many


def test_missing_rows_and_bad_input():
    async def body(probe: Probe) -> None:
        with pytest.raises(Team.DoesNotExist):
            await Team.cached.aget(pk=999_999)
        with pytest.raises(Team.DoesNotExist):
            await Team.cached.aget(pk=999_999)
        with pytest.raises(Team.DoesNotExist):
            await Team.cached.aget(pk=None)
        assert len(probe.reads) == 1  # the absence was cached
        with pytest.raises(TypeError, match=r"Team.cached.aget\(\): 'name' is not the pk"):
            await Team.cached.aget(name="x")
        with pytest.raises(TypeError, match=r"aget\(\) takes exactly one keyword"):
            await Team.cached.aget()
        with pytest.raises(TypeError, match=r"aget_many\(\) takes an iterable of pks"):
            await Team.cached.aget_many(5)  # type: ignore[arg-type]
        assert await Team.cached.aget_many([]) == {}

    run(body)


def test_concurrent_readers_of_an_invalidated_row_cost_one_query():
    team = TeamFactory(name="hot")
    Team.cached.get(pk=team.pk)
    Team.cached.invalidate(team.pk)

    async def body(probe: Probe) -> list[Team]:
        return await asyncio.gather(*[Team.cached.aget(pk=team.pk) for _ in range(50)])

    rows, probe = run(body)
    assert {row.name for row in rows} == {"hot"} and len(probe.reads) == 1


def test_readers_wait_for_a_lease_held_elsewhere_without_reading_the_database():
    team = TeamFactory(name="leased")
    plan = plan_for(Team)
    key = plan.keys.row(team.pk)
    client = get_redis_connection("default")
    client.set(plan.keys.lease(key), b"someone-else", px=5_000)  # another process is filling
    ticked = threading.Event()  # the loop ran other work five times while the readers waited
    gave_back: list[bool] = []

    def give_back_once_the_loop_has_ticked() -> None:
        gave_back.append(ticked.wait(timeout=10))
        client.delete(plan.keys.lease(key))  # the holder gave up: the next reader fills

    async def body(probe: Probe) -> tuple[list[Team], bool]:
        done = asyncio.Event()
        waiting_at_fifth_tick = False

        async def read() -> list[Team]:
            rows = await asyncio.gather(*[Team.cached.aget(pk=team.pk) for _ in range(10)])
            done.set()
            return rows

        async def ticker() -> None:  # a loop blocked by the wait could not tick
            nonlocal waiting_at_fifth_tick
            for _ in range(5):
                await asyncio.sleep(0.01)
            waiting_at_fifth_tick = not done.is_set()
            ticked.set()

        holder = threading.Thread(target=give_back_once_the_loop_has_ticked)
        holder.start()
        rows, _ = await asyncio.gather(read(), ticker())
        await asyncio.to_thread(holder.join)
        return rows, waiting_at_fifth_tick

    with override_settings(CACHESTRAT={"LEASE_WAIT": 30}):  # waits as long as it takes
        (rows, waiting_at_fifth_tick), probe = run(body)
    assert gave_back == [True] and waiting_at_fifth_tick
    assert {row.name for row in rows} == {"leased"}
    assert len(probe.reads) == 1  # nobody read the row while the lease was held
    assert plan.stats.lease_waits > 0


def test_a_hit_due_for_an_early_refresh_is_refreshed_and_served():
    """XFetch: with a huge beta every hit is due; the refresh is the sync path's."""
    teams = TeamFactory.create_batch(2)
    pks = [t.pk for t in teams]
    with override_settings(CACHESTRAT={"EARLY_REFRESH": 1e12, "MODELS": {}}):
        Team.cached.get_many(pks)

        async def body(probe: Probe) -> list[Any]:
            one = await Team.cached.aget(pk=pks[1])
            assert len(probe.reads) == 1  # refreshed under a lease, in a thread
            return [one, await Team.cached.aget_many(pks)]

        (one, many), probe = run(body)
        stats = plan_for(Team).stats
    assert one.name == teams[1].name and {pk: t.name for pk, t in many.items()} == {
        t.pk: t.name for t in teams
    }
    assert len(probe.reads) == 3 and stats.early_refreshes == 3
    assert (stats.hits, stats.misses, stats.fills) == (3, 2, 5)  # each refresh is a fill


@pytest.fixture
def unreachable() -> Iterator[None]:
    """The cache pointed at a port nothing listens on."""
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2, "SOCKET_TIMEOUT": 0.2},
        },
    }
    cachestrat = {"BREAKER_THRESHOLD": 2, "BREAKER_COOLDOWN": 30}
    with override_settings(CACHES=caches, CACHESTRAT=cachestrat):
        breaker.reset()
        yield
    breaker.reset()


def forget_the_writes() -> None:
    """The rows were written while Redis was away: the invalidations they left pending
    send async reads to the sync path, which replays them first. Forget them, as a process
    whose Redis has just gone away."""
    pending.clear()
    breaker.reset()


def test_redis_unreachable_serves_the_database_and_trips_the_same_breaker(unreachable):
    team, item = TeamFactory(name="db"), ItemFactory(code="db")
    forget_the_writes()

    async def body(probe: Probe) -> list[Any]:
        got: list[Any] = [await Team.cached.aget(pk=team.pk) for _ in range(4)]
        got.append(await Team.cached.aget_many([team.pk]))
        got.append(await Item.cached.aget(code="db"))
        with pytest.raises(Team.DoesNotExist):
            await Team.cached.aget(pk=999_999)
        return got

    got, probe = run(body)
    assert [g.name for g in got[:4]] == ["db"] * 4 and got[4][team.pk].name == "db"
    assert got[5].pk == item.pk
    assert len(probe.reads) == 7  # every read from the database
    assert breaker.errors == 2 and breaker.is_open  # two failures, then no more attempts


def blocking_pool_client() -> Redis:
    """A client whose pool no async twin is derived from (``CONNECTION`` of the test below)."""
    from django.conf import settings

    return Redis(connection_pool=redis.BlockingConnectionPool.from_url(settings.REDIS_URL))


def test_async_reads_on_the_sync_path_let_the_breaker_close_after_an_outage():
    team = TeamFactory(name="back")
    with override_settings(CACHESTRAT={"CONNECTION": f"{__name__}.blocking_pool_client"}):
        Team.cached.get(pk=team.pk)
        breaker.failure(threshold=1, cooldown=0.2)  # an outage, over by now
        time.sleep(0.3)

        async def body(probe: Probe) -> list[Any]:
            return [await Team.cached.aget(pk=team.pk) for _ in range(3)]

        got, probe = run(body)
    # No async client here: the probe after the cool-down is the sync path's, and it closes
    # the breaker, so the next reads are hits again.
    assert [g.name for g in got] == ["back"] * 3
    assert not breaker.is_open and breaker.failures == 0
    assert len(probe.reads) <= 1


def test_while_invalidations_are_pending_reads_take_the_sync_path(unreachable):
    team = TeamFactory(name="pending")  # its invalidation could not be sent

    async def body(probe: Probe) -> Team:
        return await Team.cached.aget(pk=team.pk)

    row, probe = run(body)
    assert row.name == "pending" and probe.built_on and LOOP not in probe.built_on
    assert pending.waiting and breaker.errors == 2  # the write's, then the sync read's


def test_without_fail_open_the_redis_error_reaches_the_caller(unreachable):
    team = TeamFactory()
    forget_the_writes()

    async def body(probe: Probe) -> None:
        with pytest.raises(redis.ConnectionError):
            await Team.cached.aget(pk=team.pk)

    with override_settings(CACHESTRAT={"FAIL_OPEN": False}):
        run(body)
    assert breaker.errors == 1


def test_hit_signals_are_sent_as_by_the_sync_path():
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    seen: list[tuple[str, list[Any]]] = []

    async def on_hit(sender: Any, pks: list[Any], **kwargs: Any) -> None:
        seen.append(("hit", pks))

    async def on_miss(sender: Any, pks: list[Any], **kwargs: Any) -> None:
        seen.append(("miss", pks))

    signals.hit.connect(on_hit, sender=Team)
    signals.miss.connect(on_miss, sender=Team)
    try:

        async def body(probe: Probe) -> None:
            await Team.cached.aget(pk=team.pk)
            await Team.cached.aget_many([team.pk])

        run(body)
    finally:
        signals.hit.disconnect(on_hit, sender=Team)
        signals.miss.disconnect(on_miss, sender=Team)
    assert seen == [("hit", [team.pk]), ("hit", [team.pk])]


def test_a_loop_that_closed_leaves_no_client_behind():
    team = TeamFactory()
    Team.cached.get(pk=team.pk)

    async def body(probe: Probe) -> asyncio.AbstractEventLoop:
        await Team.cached.aget(pk=team.pk)
        return asyncio.get_running_loop()

    first, _ = run(body)
    second, _ = run(body)
    assert first.is_closed() and list(aclient._links) == [second]
    pool = aclient._links[second].client.connection_pool
    assert not any(c.is_connected for c in pool._available_connections)  # closed on its loop


def test_a_sync_caller_inside_a_transaction_reads_its_own_write():
    team = TeamFactory(name="old")
    with transaction.atomic():
        Team.objects.filter(pk=team.pk).update(name="new")
        # Another thread, outside the transaction, caches the committed row again.
        other = threading.Thread(target=lambda: (Team.cached.get(pk=team.pk), connection.close()))
        other.start()
        other.join(10)
        assert Team.cached.plan.stats.fills == 1  # the committed row, "old", is cached
        # async_to_sync runs the coroutine on another thread: the transaction is this one's.
        assert async_to_sync(Team.cached.aget)(pk=team.pk).name == "new"
    assert async_to_sync(Team.cached.aget)(pk=team.pk).name == "new"


def test_a_task_that_hit_on_the_loop_still_defers_to_a_sync_caller_it_runs_under():
    team = TeamFactory(name="old")
    Team.cached.get(pk=team.pk)

    def write_then_read() -> str:
        with transaction.atomic():
            Team.objects.filter(pk=team.pk).update(name="new")
            recache = threading.Thread(
                target=lambda: (Team.cached.get(pk=team.pk), connection.close())
            )
            recache.start()
            recache.join(10)  # the committed row, "old", is cached again
            # From this worker, async_to_sync runs aget on the loop in a task of its own:
            # what the outer task knew (no sync caller) must not be believed there.
            return async_to_sync(Team.cached.aget)(pk=team.pk).name  # type: ignore[no-any-return]

    async def body(probe: Probe) -> tuple[str, str, str]:
        before = (await Team.cached.aget(pk=team.pk)).name  # a hit on the loop
        inner = await sync_to_async(write_then_read)()
        return before, inner, (await Team.cached.aget(pk=team.pk)).name

    (before, inner, after), _ = run(body)
    assert (before, inner, after) == ("old", "new", "new")


def test_after_a_block_that_hid_the_sync_caller_the_caller_counts_again():
    team = TeamFactory(name="old")
    Team.cached.get(pk=team.pk)
    elsewhere = ThreadPoolExecutor(max_workers=1)

    async def read_in_and_after_the_block() -> tuple[str, str]:
        # With an executor of its own, the block sends sync work there, not to the caller:
        # inside it no caller is seen, and the answer kept there must not outlive it.
        async with ThreadSensitiveContext(executor=elsewhere):
            inside = (await Team.cached.aget(pk=team.pk)).name
        return inside, (await Team.cached.aget(pk=team.pk)).name

    try:
        with transaction.atomic():
            Team.objects.filter(pk=team.pk).update(name="new")
            recache = threading.Thread(
                target=lambda: (Team.cached.get(pk=team.pk), connection.close())
            )
            recache.start()
            recache.join(10)  # the committed row, "old", is cached again
            inside, after = async_to_sync(read_in_and_after_the_block)()
    finally:
        elsewhere.shutdown()
    assert (inside, after) == ("old", "new")


def test_hits_on_the_loop_are_recorded_for_the_debug_panel():
    team, absent = TeamFactory(), TeamFactory()
    Team.cached.get(pk=team.pk)
    absent_pk = absent.pk
    absent.delete()

    async def body(probe: Probe) -> dict[str, int]:
        with requestlog.recording() as log:
            await Team.cached.aget(pk=team.pk)
            await Team.cached.aget_many([team.pk, absent_pk])  # the absent row: the sync path
        assert probe.built_on == [LOOP, LOOP]
        return log.as_dict()["models"]["testapp.team"]  # type: ignore[no-any-return]

    counts, _ = run(body)
    assert (counts["hits"], counts["misses"], counts["queries_saved"]) == (2, 1, 1)


def test_on_a_redis_cluster_hits_are_served_on_the_loop(on_cluster: LocalCluster) -> None:
    teams = TeamFactory.create_batch(20)
    pks = [team.pk for team in teams]

    async def body(probe: Probe) -> list[dict[Any, Team]]:
        first = await Team.cached.aget_many(pks)  # misses: filled by the sync path
        assert len(probe.reads) == 1
        probe.reset()
        second = await Team.cached.aget_many(pks)
        one = await Team.cached.aget(pk=pks[0])
        assert probe.sql == [] and probe.built_on == [LOOP] * 21 and one.pk == pks[0]
        return [first, second]

    (first, second), _ = run(body)
    assert sorted(first) == sorted(second) == sorted(pks)
    assert isinstance(aclient._links[next(iter(aclient._links))].client, AsyncRedisCluster)
    nodes = keys_by_node(on_cluster, "cs:testapp.team:{*}")
    assert len(nodes) == 3 and all(nodes.values())  # the rows span every primary


def test_through_sentinel_hits_are_served_on_the_loop(local_sentinel: Any) -> None:
    team = TeamFactory(name="sentinel")

    async def body(probe: Probe) -> list[Team]:
        rows = [await Team.cached.aget(pk=team.pk) for _ in range(3)]
        assert len(probe.reads) == 1 and probe.built_on.count(LOOP) == 2  # a fill, two hits
        return rows

    with override_settings(CACHESTRAT={"CONNECTION": "tests.cluster.sentinel_client"}):
        breaker.reset()
        pending.clear()
        rows, _ = run(body)
        client = next(iter(aclient._links.values())).client
    assert [row.name for row in rows] == ["sentinel"] * 3
    assert client.connection_pool.service_name == "cachestrat"
    primary = Redis(port=local_sentinel.primary.port)
    assert primary.exists(plan_for(Team).keys.row(team.pk))  # filled on the primary
    primary.close()


def test_a_unix_socket_server_and_a_settings_change_on_one_loop(tmp_path: Path) -> None:
    """The async client follows the sync connection: its class (a Unix socket, with a
    password) and, when CACHES changes, the new server."""
    socket_path = str(tmp_path / "redis.sock")
    server = RedisServer("--unixsocket", socket_path, "--requirepass", "s3cret")
    server.start()
    team = TeamFactory(name="unix")
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"unix://:s3cret@{socket_path}?db=3",
        }
    }

    async def body(probe: Probe) -> list[str]:
        names = []
        for _ in range(2):  # a fill, then a hit on the loop
            names.append((await Team.cached.aget(pk=team.pk)).name)
        clients = {id(link.client) for link in aclient._links.values()}
        with override_settings(CACHES=caches):
            await sync_to_async(Team.cached.get)(pk=team.pk)  # filled on the other server
            probe.reset()
            names.append((await Team.cached.aget(pk=team.pk)).name)
            assert probe.sql == [] and probe.built_on == [LOOP]
            link = aclient._links[asyncio.get_running_loop()]
            kwargs = link.client.connection_pool.connection_kwargs
            assert id(link.client) not in clients
            assert (kwargs["path"], kwargs["db"], kwargs["password"]) == (socket_path, 3, "s3cret")
        return names

    try:
        names, _ = run(body)
    finally:
        server.stop()
    assert names == ["unix"] * 3


@pytest.fixture
def asgi_server() -> Iterator[str]:
    """uvicorn serving tests/asgi_app.py on a free port, stopped by pid."""
    port = free_port()
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
        "CACHESTRAT_TEST_DB_NAME": str(connection.settings_dict["NAME"]),
    }
    command = [sys.executable, "-m", "uvicorn", "tests.asgi_app:application"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    server = subprocess.Popen(command, env=env, cwd=root)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, "uvicorn exited"
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.kill(server.pid, signal.SIGTERM)
        server.wait(30)


def fetch(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_under_uvicorn_concurrent_requests_are_served_from_the_cache(asgi_server: str) -> None:
    teams = {team.pk: team.name for team in TeamFactory.create_batch(4)}
    item = ItemFactory(code="served")
    urls = [f"{asgi_server}/team/{pk}" for pk in teams] * 10
    with ThreadPoolExecutor(8) as pool:
        cold = list(pool.map(fetch, urls))  # every row missed at once by many requests
        before = fetch(f"{asgi_server}/figures")
        warm = list(pool.map(fetch, urls))
        after = fetch(f"{asgi_server}/figures")
        many = fetch(f"{asgi_server}/teams?pks={','.join(map(str, teams))}")
        by_code = fetch(f"{asgi_server}/item/served")
    for body in cold + warm:
        assert body["name"] == teams[body["pk"]]
    assert {int(pk): name for pk, name in many.items()} == teams
    assert by_code == {"pk": str(item.pk), "code": "served"}
    # Leases: one database read per row for 40 concurrent cold requests.
    assert before["fills"] == 4 and before["db_fallbacks"] == 0
    assert after["hits"] - before["hits"] == 40 and after["misses"] == before["misses"]
    # The warm round's rows were all built on the event loop's thread: no thread hop.
    warm_built = Counter(after["built_on"]) - Counter(before["built_on"])
    assert warm_built == {"MainThread": 40}


class AsyncTestCaseReads(TestCase):
    """Django's async test methods run under async_to_sync, in the test's transaction."""

    async def test_a_row_cached_in_the_test_is_a_hit_in_the_test(self) -> None:
        team = await sync_to_async(TeamFactory)(name="in a test case")
        stats = plan_for(Team).stats
        assert (await Team.cached.aget(pk=team.pk)).name == "in a test case"
        assert (stats.misses, stats.fills, stats.hits) == (1, 1, 0)
        assert (await Team.cached.aget(pk=team.pk)).name == "in a test case"
        assert list(await Team.cached.aget_many([team.pk])) == [team.pk]
        assert (stats.misses, stats.fills, stats.hits) == (1, 1, 2)  # served by the cache
        team.name = "renamed"
        await team.asave()
        assert (await Team.cached.aget(pk=team.pk)).name == "renamed"
