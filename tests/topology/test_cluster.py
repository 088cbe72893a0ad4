"""Redis Cluster and Sentinel through ``CONNECTION``: every path against real local servers."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection as db_connection
from django.test import override_settings
from redis import Redis

from django_cachestrat import client, drain, stats
from django_cachestrat.breaker import breaker
from django_cachestrat.client import connection, topology
from django_cachestrat.cluster import GENERATION_COPIES, copy_key
from django_cachestrat.inspection import inspect_row
from django_cachestrat.models import CounterBatch
from django_cachestrat.overview import gather
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for
from django_cachestrat.topology import NodeDown
from tests import cluster as servers
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries
from tests.servers import LocalCluster, free_cluster_port
from tests.testapp.models import Profile, Team

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


def with_connection(path: str, **options: Any) -> override_settings:
    return override_settings(CACHESTRAT={**settings.CACHESTRAT, "CONNECTION": path, **options})


@pytest.fixture
def on_cluster(local_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """Every Redis call of the app goes to the local cluster, emptied before the test.
    No replica is stopped here: writes wait up to 0.4 s for one (below the client's 0.5 s
    socket timeout), so that a busy host's short stall does not send an increment to the
    database (the tests that stop replicas use a cluster of their own, with the default)."""
    servers.flush_cluster(local_cluster)
    with with_connection("tests.cluster.cluster_client", REDIS_REPLICA_WAIT=0.4):
        breaker.reset()
        pending.clear()
        yield local_cluster
    breaker.reset()
    pending.clear()


def keys_by_node(cluster: LocalCluster, pattern: str) -> dict[int, list[bytes]]:
    found = {}
    for port in cluster.live_ports():
        with Redis(port=port) as node:
            if node.info("replication")["role"] == "master":
                found[port] = list(node.scan_iter(pattern))
    return found


def test_the_connection_is_a_redis_cluster(on_cluster: LocalCluster) -> None:
    assert type(connection()).__name__ == "RedisCluster"
    assert topology().is_cluster


def test_reads_hit_after_one_fill_with_rows_spread_over_every_primary(
    on_cluster: LocalCluster,
) -> None:
    profiles = ProfileFactory.create_batch(30)
    pks = [p.pk for p in profiles]
    assert count_queries(lambda: Profile.cached.get_many(pks))[1] == 1
    found, n = count_queries(lambda: Profile.cached.get_many(pks))
    assert n == 0 and sorted(found) == sorted(pks)
    assert count_queries(lambda: Profile.cached.get(pk=pks[0]))[1] == 0
    nodes = keys_by_node(on_cluster, "cs:testapp.profile:{*}")
    assert len(nodes) == 3 and all(nodes.values())  # the rows live on all three primaries
    user = ProfileFactory(username="jane")
    Profile.cached.get(username="jane")
    assert count_queries(lambda: Profile.cached.get(username="jane"))[1] == 0
    assert Profile.cached.get(username="jane").pk == user.pk


def test_saves_deletes_and_flushes_invalidate(on_cluster: LocalCluster) -> None:
    profiles = ProfileFactory.create_batch(10, age=1)
    pks = [p.pk for p in profiles]
    Profile.cached.get_many(pks)
    profiles[0].age = 2
    profiles[0].save()
    assert Profile.cached.get(pk=pks[0]).age == 2
    profiles[1].delete()
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=pks[1])
    Profile.objects.filter(pk__in=pks[2:]).update(age=5)
    assert {p.age for p in Profile.cached.get_many(pks[2:]).values()} == {5}
    Profile.cached.flush()
    _, n = count_queries(lambda: Profile.cached.get_many(pks[2:]))
    assert n == 1  # every row a miss after the flush


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_write_behind_increments_overlay_and_flush(on_cluster: LocalCluster) -> None:
    profiles = ProfileFactory.create_batch(12, likes=10)
    for profile in profiles:
        Profile.cached.incr(profile.pk, "likes", by=3)
    rows = Profile.cached.get_many([p.pk for p in profiles])
    assert {row.likes for row in rows.values()} == {13}  # pending increments added
    results = drain.drain_all()
    assert sum(r.increments for r in results) == 36
    assert set(Profile.objects.values_list("likes", flat=True)) == {13}
    assert CounterBatch.objects.count() == len(results) > 1  # several stripes, several slots
    assert {row.likes for row in Profile.cached.get_many([p.pk for p in profiles]).values()} == {13}


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_statistics_overview_and_inspector(on_cluster: LocalCluster) -> None:
    stats.reset()
    profiles = ProfileFactory.create_batch(20)
    Profile.cached.get_many([p.pk for p in profiles])
    Profile.cached.get_many([p.pk for p in profiles])
    Profile.cached.incr(profiles[0].pk, "likes")
    summary = stats.read(5)["testapp.profile"]
    assert (summary.counts["hits"], summary.counts["misses"]) == (20, 20)
    figures = gather()
    assert figures.server is not None and figures.server.version.startswith("7.")
    (row,) = [m for m in figures.models if m.label == "testapp.profile"]
    on_nodes = keys_by_node(on_cluster, "cs:testapp.profile:*")
    assert row.keys_exact and row.keys == sum(len(keys) for keys in on_nodes.values())
    (wb,) = figures.write_behind
    assert wb.pending == 1
    report = inspect_row(Profile, profiles[3].pk)
    assert report.state == "row" and report.in_database


def test_commands(on_cluster: LocalCluster) -> None:
    teams = TeamFactory.create_batch(5)
    out = io.StringIO()
    call_command("cachestrat_warm", "testapp.Team", stdout=out, stderr=io.StringIO())
    assert count_queries(lambda: Team.cached.get_many([t.pk for t in teams]))[1] == 0
    call_command("cachestrat_invalidate", "testapp.Team", str(teams[0].pk), stdout=out)
    assert count_queries(lambda: Team.cached.get(pk=teams[0].pk))[1] == 1
    call_command("cachestrat_stats", "--minutes", "5", stdout=out)
    assert "testapp.team" in out.getvalue()
    call_command("cachestrat_inspect", "testapp.Team", str(teams[1].pk), stdout=out)
    assert "Cached row" in out.getvalue()
    profile = ProfileFactory(likes=1)
    Profile.cached.incr(profile.pk, "likes")
    call_command("cachestrat_flush_counters", stdout=out)
    assert Profile.objects.get(pk=profile.pk).likes == 2
    call_command("cachestrat_replay_invalidations", stdout=out)


def test_missed_invalidations_are_replayed_to_the_cluster(on_cluster: LocalCluster) -> None:
    profiles = ProfileFactory.create_batch(6, age=1)
    pks = [p.pk for p in profiles]
    Profile.cached.get_many(pks)
    Profile.objects.filter(pk__in=pks).update(age=2)  # invalidated: keys and rows agree
    Profile.cached.get_many(pks)
    keys = [plan_for(Profile).keys.row(pk) for pk in pks]
    # Deletes that could not be sent, replayed at the next call (keys on several nodes).
    Profile.objects.filter(pk__in=pks).update(age=3)
    pending.add(keys, [], fallback=[])
    assert {p.age for p in Profile.cached.get_many(pks).values()} == {3}
    assert not pending


def test_a_cluster_unreachable_at_startup_fails_open() -> None:
    servers.running["dead_port"] = free_cluster_port()
    team = TeamFactory()
    with with_connection("tests.cluster.unreachable_cluster"):
        breaker.reset()
        try:
            assert Team.cached.get(pk=team.pk) == team  # from the database
            assert Team.cached.get(pk=team.pk) == team
        finally:
            breaker.reset()
            pending.clear()
            client.reset()


@pytest.fixture(scope="module")
def local_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[servers.LocalSentinel]:
    sentinel = servers.LocalSentinel(str(tmp_path_factory.mktemp("sentinel")))
    try:
        sentinel.start()
        servers.running["sentinel"] = sentinel
        yield sentinel
    finally:
        servers.running.pop("sentinel", None)
        sentinel.stop()


def test_through_sentinel(local_sentinel: servers.LocalSentinel) -> None:
    profiles = ProfileFactory.create_batch(3, age=1)
    pks = [p.pk for p in profiles]
    with with_connection("tests.cluster.sentinel_client"):
        breaker.reset()
        assert not topology().is_cluster
        Profile.cached.get_many(pks)
        assert count_queries(lambda: Profile.cached.get_many(pks))[1] == 0
        profiles[0].age = 9
        profiles[0].save()
        assert Profile.cached.get(pk=pks[0]).age == 9
    with Redis(port=local_sentinel.primary.port) as primary:
        assert primary.exists(plan_for(Profile).keys.row(pks[1]))


def test_hits_through_sentinel_do_not_ask_the_sentinels(
    local_sentinel: servers.LocalSentinel,
) -> None:
    """The topology, and so the sentinels' answer about replicas, is built once per
    connection: a hit of a model with counters (its overlay runs a script) asks nothing."""

    def sentinel_commands() -> int:
        total = 0
        for port in local_sentinel.sentinel_ports:
            with Redis(port=port) as sentinel:
                total += int(sentinel.info("stats")["total_commands_processed"])
        return total

    profile = ProfileFactory(age=1)
    with with_connection("tests.cluster.sentinel_client"):
        breaker.reset()
        Profile.cached.get(pk=profile.pk)
        before = sentinel_commands()
        for _ in range(50):
            Profile.cached.get(pk=profile.pk)
        asked = sentinel_commands() - before - len(local_sentinel.sentinel_ports)  # the INFOs
    # One question per hit would be 50; the sentinels' own chatter (pings, hellos) is a few.
    assert asked < 25, asked


@pytest.fixture
def fresh_cluster(tmp_path: Any) -> Iterator[LocalCluster]:
    """A cluster of its own (a failover changes who is primary), used as CONNECTION."""
    cluster = LocalCluster(str(tmp_path))
    previous = servers.running.get("cluster")
    try:
        cluster.start()
        servers.running["cluster"] = cluster
        with with_connection("tests.cluster.cluster_client"):
            breaker.reset()
            pending.clear()
            yield cluster
    finally:
        for server in cluster.servers:  # a stopped process must run again to be terminated
            if server.process is not None:
                os.kill(server.process.pid, signal.SIGCONT)
        cluster.stop()
        if previous is not None:
            servers.running["cluster"] = previous
        breaker.reset()
        pending.clear()


def primary_and_replica(cluster: LocalCluster, key: str) -> tuple[Any, Any]:
    """The servers holding ``key``'s slot: its primary and that primary's replica."""
    by_port = {server.port: server for server in cluster.servers}
    with Redis(port=cluster.ports[0]) as any_node:
        slot = any_node.cluster("KEYSLOT", key)
        for start, end, primary, replica, *_ in any_node.execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return by_port[primary[1]], by_port[replica[1]]
    raise AssertionError(f"no node serves slot {slot}")


def resume_once_waited_on(primary_port: int, replica: Any, waited_on: list[bool]) -> Any:
    """A thread (not started) that waits until a client of the primary is blocked (in
    ``WAIT``), then 0.3 s more (past the default ``REDIS_REPLICA_WAIT`` of 0.1 s), then
    resumes the stopped replica; ``waited_on`` records that it saw the client blocked."""

    def resume() -> None:
        deadline = time.monotonic() + 30
        with Redis(port=primary_port) as primary:
            while not int(primary.info("clients")["blocked_clients"]):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.005)
            else:
                waited_on.append(True)
                time.sleep(0.3)
        os.kill(replica.process.pid, signal.SIGCONT)

    return threading.Thread(target=resume)


def replica_listed(key: str) -> None:
    """Until the app's client lists a replica for ``key``'s slot. The client waits for the
    replicas its slot table lists: a busy machine may have built the table before
    CLUSTER SLOTS listed them."""
    client = connection()
    slot = client.keyslot(key)
    deadline = time.monotonic() + 10
    while len(client.nodes_manager.slots_cache.get(slot) or []) < 2:
        assert time.monotonic() < deadline, "the replica never appeared in CLUSTER SLOTS"
        time.sleep(0.1)
        client.nodes_manager.initialize()


def read_until_cached(pk: Any, seconds: float = 15) -> list[int]:
    """Every age read until a read is served from the cache again."""
    ages = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        profile, queries = count_queries(lambda: Profile.cached.get(pk=pk))
        ages.append(profile.age)
        if queries == 0:
            return ages
        time.sleep(0.05)
    raise AssertionError(f"the cache did not serve reads again after the failover: {ages}")


@pytest.mark.django_db(transaction=True)  # the save commits: its deletes are sent
def test_a_failover_to_a_replica_that_missed_the_deletes_serves_no_stale_row(
    fresh_cluster: LocalCluster,
) -> None:
    """The hard case: the replica is cut off, the invalidation reaches only the primary,
    the primary freezes and the replica takes over."""
    profile = ProfileFactory(age=1)
    assert Profile.cached.get(pk=profile.pk).age == 1
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0
    primary, replica = primary_and_replica(fresh_cluster, plan_for(Profile).keys.row(profile.pk))
    os.kill(replica.process.pid, signal.SIGSTOP)  # it cannot reconnect while stopped
    with Redis(port=primary.port) as node:
        node.execute_command("CLIENT KILL TYPE replica")
    profile.age = 2
    profile.save()  # its deletes reach the primary only
    os.kill(primary.process.pid, signal.SIGSTOP)
    os.kill(replica.process.pid, signal.SIGCONT)
    with Redis(port=replica.port) as node:
        node.execute_command("READONLY")
        assert node.exists(plan_for(Profile).keys.row(profile.pk))  # the old row is there
        node.execute_command("CLUSTER FAILOVER TAKEOVER")
    ages = read_until_cached(profile.pk)
    assert set(ages) == {2}, ages  # no read returned the row from before the save


@pytest.fixture
def fresh_sentinel(tmp_path: Any) -> Iterator[servers.LocalSentinel]:
    """A Sentinel set of its own (a failover changes who is primary), used as CONNECTION."""
    sentinel = servers.LocalSentinel(str(tmp_path))
    previous = servers.running.get("sentinel")
    try:
        sentinel.start()
        servers.running["sentinel"] = sentinel
        with with_connection("tests.cluster.sentinel_client"):
            breaker.reset()
            pending.clear()
            yield sentinel
    finally:
        for server in (sentinel.primary, sentinel.replica):
            if server.process is not None:
                os.kill(server.process.pid, signal.SIGCONT)
        sentinel.stop()
        if previous is not None:
            servers.running["sentinel"] = previous
        breaker.reset()
        pending.clear()


@pytest.mark.django_db(transaction=True)  # the save commits: its deletes are sent
def test_a_sentinel_failover_to_a_replica_that_missed_the_deletes_serves_no_stale_row(
    fresh_sentinel: servers.LocalSentinel,
) -> None:
    profile = ProfileFactory(age=1)
    assert Profile.cached.get(pk=profile.pk).age == 1
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0
    primary, replica = fresh_sentinel.primary, fresh_sentinel.replica
    os.kill(replica.process.pid, signal.SIGSTOP)  # it cannot reconnect while stopped
    with Redis(port=primary.port) as node:
        node.execute_command("CLIENT KILL TYPE replica")
    profile.age = 2
    profile.save()  # its deletes reach the primary only
    os.kill(primary.process.pid, signal.SIGSTOP)
    os.kill(replica.process.pid, signal.SIGCONT)
    with Redis(port=replica.port) as node:
        assert node.exists(plan_for(Profile).keys.row(profile.pk))  # the old row is there
    with Redis(port=fresh_sentinel.sentinel_ports[0]) as sentinel:
        sentinel.execute_command("SENTINEL FAILOVER", "cachestrat")
    ages = read_until_cached(profile.pk, seconds=30)
    assert set(ages) == {2}, ages  # no read returned the row from before the save


@pytest.mark.django_db(transaction=True)  # the reader thread sees what the writer commits
def test_a_primary_killed_under_load_serves_no_stale_row(fresh_cluster: LocalCluster) -> None:
    profile = ProfileFactory(age=0)
    committed = [0]  # the last age whose save has returned (its commit is done)
    stale: list[tuple[int, int]] = []
    reads = [0]
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                floor = committed[0]
                age = Profile.cached.get(pk=profile.pk).age
                reads[0] += 1
                if age < floor:
                    stale.append((floor, age))
        finally:
            db_connection.close()

    primary, _ = primary_and_replica(fresh_cluster, plan_for(Profile).keys.row(profile.pk))
    thread = threading.Thread(target=reader)
    thread.start()
    try:
        deadline = time.monotonic() + 60  # a poll: failover takes seconds on a quiet host
        age = 0
        while time.monotonic() < deadline:
            age += 1
            profile.age = age
            profile.save()
            committed[0] = age
            if age == 10:
                primary.process.kill()  # SIGKILL: the replica takes over after node-timeout
                primary.process.wait()
                primary.process = None
            if age > 10 and count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0:
                break  # served from the cache again, after the failover
            time.sleep(0.02)
        else:
            raise AssertionError("the cache did not serve reads again after the failover")
    finally:
        stop.set()
        thread.join(10)
    assert reads[0] > 0
    assert stale == []


@pytest.mark.django_db(transaction=True)  # the save commits: its deletes are sent
def test_a_stopped_replica_does_not_turn_the_cache_off(fresh_cluster: LocalCluster) -> None:
    """A WAIT no replica answers leaves the deletes on the primary: they are kept for after
    a failover, and reads of other rows keep hitting (no breaker failure, no replay)."""
    hot, other = ProfileFactory(age=1), ProfileFactory(age=5)
    Profile.cached.get(pk=hot.pk)
    # Cached, so the save's DEL changes the data set and is replicated: a DEL of a missing
    # key is not, and a WAIT after it has nothing new to wait for.
    Profile.cached.get(pk=other.pk)
    _, replica = primary_and_replica(fresh_cluster, plan_for(Profile).keys.row(other.pk))
    assert replica.process is not None
    replica_listed(plan_for(Profile).keys.row(other.pk))
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        other.age = 6
        other.save()  # WAIT 1 cannot be acknowledged on that shard
        assert breaker.failures == 0 and not pending.waiting
        assert pending.unconfirmed_keys  # kept, for after a failover
        assert Profile.cached.get(pk=other.pk).age == 6
        for _ in range(5):
            assert count_queries(lambda: Profile.cached.get(pk=hot.pk))[1] == 0
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)


def primary_of(cluster: LocalCluster, key: str) -> Any:
    return primary_and_replica(cluster, key)[0]


@pytest.mark.django_db(transaction=True)  # the save commits: its deletes are sent
def test_a_node_down_turns_the_cache_off_for_its_keys_only(fresh_cluster: LocalCluster) -> None:
    """One primary and its replica stopped (so no failover): rows on the other primaries
    keep hitting, rows on the stopped one come from the database without an exception,
    only that node's breaker opens, and the cache serves them again once it is back."""
    plan = plan_for(Team)
    teams = TeamFactory.create_batch(30)
    for team in teams:  # one-row hits: each node's copy of the generation is made
        Team.cached.get(pk=team.pk)
    by_node: dict[int, list[int]] = {}
    for team in teams:
        by_node.setdefault(primary_of(fresh_cluster, plan.keys.row(team.pk)).port, []).append(
            team.pk
        )
    # The node holding the model's generation key itself: a one-row hit reads the copy on
    # the row's own node instead, so the other nodes' rows keep hitting.
    dead_port = primary_of(fresh_cluster, plan.keys.generation).port
    dead, replica = primary_and_replica(fresh_cluster, plan.keys.generation)
    dead_pks = by_node[dead_port]
    live_pks = [pk for port, pks in by_node.items() if port != dead_port for pk in pks]
    for port in fresh_cluster.live_ports():  # so the other primaries keep serving their slots
        with Redis(port=port) as node:
            node.config_set("cluster-require-full-coverage", "no")
    on_cluster = {**settings.CACHESTRAT, "CONNECTION": "tests.cluster.cluster_client"}
    dead_breaker = breaker.node(f"127.0.0.1:{dead_port}")
    with override_settings(CACHESTRAT={**on_cluster, "BREAKER_COOLDOWN": 1.0}):
        # Open for the whole outage however slow the host: no call may reach the node.
        with override_settings(CACHESTRAT={**on_cluster, "BREAKER_COOLDOWN": 600.0}):
            Team.cached.get(pk=live_pks[0])  # connected while every node answers
            os.kill(replica.process.pid, signal.SIGSTOP)  # so it cannot take over
            os.kill(dead.process.pid, signal.SIGSTOP)
            try:
                deadline = time.monotonic() + 10
                while client.breaker_states().get(f"127.0.0.1:{dead_port}") != "open":
                    assert time.monotonic() < deadline, client.breaker_states()
                    for pk in dead_pks[:3]:  # each one a database read, never an exception
                        assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] >= 1
                Team.cached.get(pk=live_pks[0])  # replays the records a failure asks for
                errors = dead_breaker.errors
                for pk in dead_pks:
                    team, queries = count_queries(lambda pk=pk: Team.cached.get(pk=pk))
                    assert team.pk == pk and queries == 1
                assert dead_breaker.errors == errors  # the open breaker skips the node
                for pk in live_pks:
                    assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 0
                states = client.breaker_states()
                assert states.pop(f"127.0.0.1:{dead_port}") == "open"
                assert set(states.values()) == {"closed"} and len(states) == 2, states
                assert not breaker.is_open and breaker.trips == 1
                changed = Team.objects.get(pk=dead_pks[0])
                changed.name = "changed"
                changed.save()  # its delete cannot reach the node: kept, and replayed first
                for pk in live_pks:  # so this process reads the database, without waiting
                    assert Team.cached.get(pk=pk).pk == pk
                assert dead_breaker.errors == errors  # nothing waited on the stopped node
                assert Team.cached.get(pk=dead_pks[0]).name == "changed"
            finally:
                os.kill(dead.process.pid, signal.SIGCONT)
                os.kill(replica.process.pid, signal.SIGCONT)
        dead_breaker.open_until = time.monotonic()  # its cool-down over: half-open
        deadline = time.monotonic() + 15
        # Back: the dead node's rows are cached again, and every breaker closes at its
        # node's next call (a breaker past its cool-down is half-open until then).
        while count_queries(lambda: Team.cached.get(pk=dead_pks[0]))[1] or set(
            client.breaker_states().values()
        ) != {"closed"}:
            assert time.monotonic() < deadline, client.breaker_states()
            for pk in live_pks + dead_pks:
                Team.cached.get(pk=pk)
            time.sleep(0.1)
        assert set(client.breaker_states().values()) == {"closed"}
        assert not pending and Team.cached.get(pk=dead_pks[0]).name == "changed"
        for pk in dead_pks + live_pks:
            assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 0


@pytest.mark.django_db(transaction=True)  # pending increments: outside a test's transaction
def test_a_longer_redis_replica_wait_keeps_an_increment_in_redis_through_a_slow_replica(
    fresh_cluster: LocalCluster,
) -> None:
    """The replica of the stripe's primary resumes 0.3 s after the increment's WAIT began:
    past the default 0.1 s, within REDIS_REPLICA_WAIT = 5 (on a client whose socket timeout
    is longer still). The increment stays in Redis."""
    profile = ProfileFactory(likes=0)
    plan = plan_for(Profile)
    stripe = plan.keys.stripe(plan.keys.stripe_of(profile.pk, plan.stripes)).pending
    primary, replica = primary_and_replica(fresh_cluster, stripe)
    waited_on: list[bool] = []
    resumer = resume_once_waited_on(primary.port, replica, waited_on)
    with with_connection("tests.cluster.patient_cluster_client", REDIS_REPLICA_WAIT=5):
        assert topology().wait_ms == 5000
        replica_listed(stripe)
        Profile.cached.incr(profile.pk, "likes")  # a replica confirmed it: pending in Redis
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            resumer.start()
            Profile.cached.incr(profile.pk, "likes")
        finally:
            resumer.join(40)
            os.kill(replica.process.pid, signal.SIGCONT)
        assert waited_on == [True]
        assert Profile.objects.get(pk=profile.pk).likes == 0  # both pending in Redis
        assert connection().hget(stripe, f"likes:{profile.pk}") == b"2"
        assert sum(result.increments for result in drain.drain_all()) == 2
    assert Profile.objects.get(pk=profile.pk).likes == 2


def test_a_replica_wait_the_socket_timeout_would_cut_short_is_lowered_with_a_warning(
    on_cluster: LocalCluster, local_sentinel: servers.LocalSentinel, caplog: Any
) -> None:
    """A WAIT that outlasts the client's socket timeout (0.5 s here) would time out and
    count its node as failed: the wait is lowered to 80 % of the timeout, and says so."""
    for path in ("tests.cluster.cluster_client", "tests.cluster.sentinel_client"):
        with with_connection(path, REDIS_REPLICA_WAIT=2), caplog.at_level("WARNING"):
            caplog.clear()
            assert topology().wait_ms == 400
        (record,) = [r for r in caplog.records if "REDIS_REPLICA_WAIT" in r.getMessage()]
        assert "(2 s) is not below the Redis client's socket timeout (0.5 s)" in record.getMessage()
        with with_connection(path, REDIS_REPLICA_WAIT=0.25):
            assert topology().wait_ms == 250


def keys_on(node: str, count: int) -> list[str]:
    """``count`` keys in different slots, all served by ``node`` ("host:port")."""
    shape = topology()
    found: dict[int, str] = {}
    for i in range(10_000):
        key = f"{{probe{i}}}:k"
        slot = shape.client.keyslot(key)
        if shape.client.nodes_manager.get_node_from_slot(slot).name == node:
            found.setdefault(slot, key)
            if len(found) == count:
                return list(found.values())
    raise AssertionError(f"no {count} slots on {node}")


def half_open(node: str) -> None:
    """The node's breaker opened, and its cool-down is over: the next call probes it."""
    breaker.node(node).failure(threshold=1, cooldown=0.5)
    time.sleep(0.6)
    assert client.breaker_states()[node] == "half-open"


def test_a_half_open_node_is_probed_by_a_call_over_several_of_its_slots(
    on_cluster: LocalCluster,
) -> None:
    """A call whose keys span several slots of a node past its breaker's cool-down is the
    probe: asking that breaker once per slot took the probe on the first slot and refused
    the call on the second, so no probe ever reached the node (kept settle calls and
    deletes then waited for ever, with every call of the process served from the
    database). And a node still open refuses a call without keeping another's probe."""
    first, second = topology().names()[:2]
    keys = keys_on(first, 3)
    breaker.node(first).failure(threshold=1, cooldown=60)
    with pytest.raises(NodeDown):
        topology().guard(keys)
    breaker.reset()
    half_open(first)
    assert topology().guard(keys) == [breaker.nodes[first]]  # the probe, once
    assert breaker.nodes[first].probing

    breaker.reset()
    half_open(first)
    breaker.node(second).failure(threshold=1, cooldown=60)  # still open
    for _ in range(3):  # whichever node is asked first
        with pytest.raises(NodeDown):
            topology().guard([*keys, *keys_on(second, 1)])
        assert client.breaker_states()[first] == "half-open"
        assert not breaker.nodes[first].probing  # left for a call that can run


def stripe_on(node: str) -> tuple[Any, list[int]]:
    """A stripe of the profiles' counters whose keys ``node`` serves, and profiles in it."""
    plan = plan_for(Profile)
    space = plan.space("default")
    pks = [p.pk for p in ProfileFactory.create_batch(40, likes=0)]
    for pk in pks:
        stripe = space.stripe(space.stripe_of(pk, plan.stripes))
        slot = connection().keyslot(stripe.pending)
        if connection().nodes_manager.get_node_from_slot(slot).name == node:
            return stripe, [
                p for p in pks if space.stripe(space.stripe_of(p, plan.stripes)) == stripe
            ]
    raise AssertionError(f"no stripe on {node}")


@pytest.mark.django_db(transaction=True)  # increments outside a transaction go to Redis
def test_a_probe_that_finds_the_script_unloaded_still_increments_in_redis_and_closes(
    on_cluster: LocalCluster,
) -> None:
    """A node that restarted has no scripts: the probe's EVALSHA gets NOSCRIPT and goes
    on through the pipeline, which loads the script. That second step asked the breaker
    again, was refused (the probe was taken), and sent the increment to the database;
    and no script call ever closed a node's breaker, only reads did."""
    node = topology().names()[0]
    stripe, pks = stripe_on(node)
    port = int(node.rsplit(":", 1)[1])
    with Redis(port=port) as primary:
        primary.script_flush()
    half_open(node)
    Profile.cached.incr(pks[0], "likes")
    assert connection().hget(stripe.pending, f"likes:{pks[0]}") == b"1"  # in Redis
    assert Profile.objects.get(pk=pks[0]).likes == 0  # not in the database
    assert client.breaker_states()[node] == "closed"

    plan = plan_for(Profile)
    profile = next(
        p
        for p in ProfileFactory.create_batch(40)
        if primary_of(on_cluster, plan.keys.row(p.pk)).port == port
    )
    half_open(node)
    profile.age += 1
    profile.save()  # its invalidation probes the node
    assert client.breaker_states()[node] == "closed"


@pytest.mark.django_db(transaction=True)  # increments outside a transaction go to Redis
def test_an_increment_skipped_for_a_node_known_down_is_not_settled(
    on_cluster: LocalCluster,
) -> None:
    """Never sent, so nothing to settle: it goes to the database and leaves no settle
    call behind (one per increment, kept in memory and as a key for a day, during a
    whole outage)."""
    node = topology().names()[0]
    _, pks = stripe_on(node)
    breaker.node(node).failure(threshold=1, cooldown=60)
    for _ in range(5):
        Profile.cached.incr(pks[0], "likes")
    assert Profile.objects.get(pk=pks[0]).likes == 5
    assert not pending.calls


def test_generation_copies_follow_flushes_and_their_eviction_only_causes_misses(
    on_cluster: LocalCluster,
) -> None:
    """A one-row hit reads the generation's copy on the row's node: a flush gives every
    copy the generation's new value, and a copy that is evicted comes back with the
    generation's value, never with an older one."""
    plan = plan_for(Team)
    pks = [team.pk for team in TeamFactory.create_batch(12)]
    homes = {pk: topology().home(plan.keys.generation, plan.keys.row(pk)) for pk in pks}
    assert len(set(homes.values())) == 3  # one copy per primary
    for pk in pks:
        Team.cached.get(pk=pk)
        assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 0
    Team.cached.flush()
    cluster = connection()
    copies = [copy_key(plan.keys.generation, i) for i in range(GENERATION_COPIES)]
    values = cluster.mget_nonatomic([plan.keys.generation, *copies])
    assert len(set(values)) == 1 and values[0] is not None  # all alike, all new
    for pk in pks:  # every row cached before the flush is a miss
        assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 1
    cluster.delete(homes[pks[0]])  # evicted: it is made again from the generation
    assert count_queries(lambda: Team.cached.get(pk=pks[0]))[1] == 0
    assert cluster.get(homes[pks[0]]) == values[0]
    Team.cached.flush()
    for key in [plan.keys.generation, *set(homes.values())]:  # evicted, all of them
        cluster.delete(key)
    for pk in pks:  # rows filled under the flushed generation never come back
        assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 1
        assert count_queries(lambda pk=pk: Team.cached.get(pk=pk))[1] == 0
    assert count_queries(lambda: Team.cached.get_many(pks))[1] == 0  # one value again
