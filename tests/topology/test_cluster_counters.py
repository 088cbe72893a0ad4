"""Write-behind counters on a Redis Cluster: no acknowledged increment lost in a failover."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.db import connection as db_connection
from django.test import override_settings
from redis import Redis

from django_cachestrat import drain
from django_cachestrat.client import breaker_states, connection
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for
from tests import cluster as servers
from tests.factories import ProfileFactory
from tests.servers import LocalCluster
from tests.testapp.models import Profile
from tests.topology.test_cluster import (
    fresh_cluster,
    fresh_sentinel,
    primary_and_replica,
    replica_listed,
    resume_once_waited_on,
)

__all__ = ["fresh_cluster", "fresh_sentinel"]  # the fixtures, used by name

pytestmark = pytest.mark.django_db(transaction=True)  # increments outside a test transaction


def incrementing(pks: list[int], threads: int) -> tuple[threading.Event, list[Counter[int]]]:
    """Threads that increment random rows until the event is set, each counting the
    increments ``incr()`` returned from (acknowledged)."""
    stop = threading.Event()
    counts: list[Counter[int]] = [Counter() for _ in range(threads)]

    def work(counted: Counter[int]) -> None:
        try:
            while not stop.is_set():
                pk = random.choice(pks)
                Profile.cached.incr(pk, "likes")
                counted[pk] += 1
        finally:
            db_connection.close()

    workers = [threading.Thread(target=work, args=(c,)) for c in counts]
    for worker in workers:
        worker.start()
    stop.workers = workers  # type: ignore[attr-defined]
    return stop, counts


def kept() -> dict[str, Any]:
    """What the process still keeps, what its breakers say and where its slot table puts
    the kept calls' keys: the message when they never reach a replica."""
    client = connection()
    calls = [*pending.calls, *pending.unconfirmed_calls]
    slots = {
        key: [node.name for node in client.nodes_manager.slots_cache.get(client.keyslot(key), [])]
        for key in {call[1][0] for call in calls}
    }
    return {
        "calls": len(pending.calls),
        "unconfirmed_calls": len(pending.unconfirmed_calls),
        "keys": len(pending.keys),
        "unconfirmed_keys": len(pending.unconfirmed_keys),
        "breakers": breaker_states(),
        "slots": slots,
    }


def settle_and_flush(pks: list[int]) -> None:
    """Let the process send what it kept (settle calls, deletes), then flush every stripe."""
    deadline = time.monotonic() + 30
    while pending or pending.unconfirmed_calls or pending.unconfirmed_keys:
        assert time.monotonic() < deadline, f"kept operations never reached a replica: {kept()}"
        Profile.cached.get(pk=pks[0])  # each call to Redis sends them first
        time.sleep(0.2)
    while sum(result.increments for result in drain.drain_all()):
        pass


def test_a_replica_that_missed_increments_takes_over_and_none_is_lost(
    fresh_cluster: LocalCluster,
) -> None:
    """The hard case: a replica cut off while increments go on, the primary frozen, the
    replica taking over. Increments its primary alone held were not acknowledged as
    written to Redis (no replica confirmed them with WAIT), so they went to the database
    and their settle calls made sure the new primary never adds them."""
    profiles = ProfileFactory.create_batch(20, likes=0)
    pks = [p.pk for p in profiles]
    plan = plan_for(Profile)
    space = plan.space("default")
    stripes = {space.stripe(space.stripe_of(pk, plan.stripes)).pending for pk in pks}
    primary, replica = primary_and_replica(fresh_cluster, sorted(stripes)[0])
    for stripe in stripes:
        replica_listed(stripe)
    stop, counts = incrementing(pks, threads=3)
    try:
        time.sleep(0.5)
        os.kill(replica.process.pid, signal.SIGSTOP)  # it cannot reconnect while stopped
        with Redis(port=primary.port) as node:
            node.execute_command("CLIENT KILL TYPE replica")
        time.sleep(1.0)  # increments reach the primary only
        os.kill(primary.process.pid, signal.SIGSTOP)
        os.kill(replica.process.pid, signal.SIGCONT)
        with Redis(port=replica.port) as node:
            node.execute_command("CLUSTER FAILOVER TAKEOVER")
        time.sleep(2.0)  # increments go on through the failover
    finally:
        stop.set()
        for worker in stop.workers:  # type: ignore[attr-defined]
            worker.join(30)
        os.kill(primary.process.pid, signal.SIGCONT)  # it comes back as a replica
    acknowledged = sum(counts, Counter())
    assert sum(acknowledged.values()) > 100
    settle_and_flush(pks)
    likes = dict(Profile.objects.filter(pk__in=pks).values_list("pk", "likes"))
    assert likes == {pk: acknowledged[pk] for pk in pks}


def test_a_primary_killed_under_increments_loses_none(fresh_cluster: LocalCluster) -> None:
    profiles = ProfileFactory.create_batch(20, likes=5)
    pks = [p.pk for p in profiles]
    plan = plan_for(Profile)
    space = plan.space("default")
    stripe = space.stripe(space.stripe_of(pks[0], plan.stripes))
    primary, _ = primary_and_replica(fresh_cluster, stripe.pending)
    replica_listed(stripe.pending)
    stop, counts = incrementing(pks, threads=3)
    try:
        time.sleep(0.5)
        primary.process.kill()  # SIGKILL: its replica takes over after the node timeout
        primary.process.wait()
        primary.process = None
        time.sleep(4.0)
    finally:
        stop.set()
        for worker in stop.workers:  # type: ignore[attr-defined]
            worker.join(30)
    acknowledged = sum(counts, Counter())
    assert sum(acknowledged.values()) > 100
    settle_and_flush(pks)
    likes = dict(Profile.objects.filter(pk__in=pks).values_list("pk", "likes"))
    assert likes == {pk: 5 + acknowledged[pk] for pk in pks}


def test_through_sentinel_an_increment_no_replica_confirmed_goes_to_the_database(
    fresh_sentinel: servers.LocalSentinel,
) -> None:
    """The Sentinel primary's replica is stopped: an increment waits for it in vain, is
    written to the database, and is settled in Redis; the flush adds nothing twice. (Once
    the sentinels find the replica down, increments go to Redis without waiting: with no
    live replica there is no failover to lose them in.)"""
    profile = ProfileFactory(likes=0)
    Profile.cached.incr(profile.pk, "likes")  # confirmed by the replica: pending in Redis
    assert Profile.objects.get(pk=profile.pk).likes == 0
    replica = fresh_sentinel.replica
    os.kill(replica.process.pid, signal.SIGSTOP)
    try:
        for _ in range(3):
            Profile.cached.incr(profile.pk, "likes")
        assert Profile.objects.get(pk=profile.pk).likes >= 1  # not confirmed: the database
    finally:
        os.kill(replica.process.pid, signal.SIGCONT)
    settle_and_flush([profile.pk])
    assert Profile.objects.get(pk=profile.pk).likes == 4


@pytest.mark.parametrize(("wait", "to_the_database"), [(0.1, True), (5.0, False)])
def test_redis_replica_wait_is_how_long_an_increment_waits_for_a_slow_replica(
    fresh_sentinel: servers.LocalSentinel, wait: float, to_the_database: bool
) -> None:
    """The Sentinel primary's replica is stopped when an increment waits for it. With the
    default wait it stays stopped: the increment goes to the database. With a longer one it
    resumes 0.3 s after the primary began waiting (past the default 0.1 s): it acknowledges
    the increment, which stays pending in Redis."""
    profile = ProfileFactory(likes=0)
    replica = fresh_sentinel.replica
    assert replica.process is not None
    waited_on: list[bool] = []
    resumer = resume_once_waited_on(fresh_sentinel.primary.port, replica, waited_on)
    patient = {"CONNECTION": "tests.cluster.patient_sentinel_client", "REDIS_REPLICA_WAIT": wait}
    with override_settings(CACHESTRAT={**django_settings.CACHESTRAT, **patient}):
        Profile.cached.incr(profile.pk, "likes")  # a replica confirmed it: pending in Redis
        assert Profile.objects.get(pk=profile.pk).likes == 0
        os.kill(replica.process.pid, signal.SIGSTOP)
        try:
            if not to_the_database:
                resumer.start()
            Profile.cached.incr(profile.pk, "likes")
        finally:
            if resumer.is_alive():
                resumer.join(40)
            os.kill(replica.process.pid, signal.SIGCONT)
        assert Profile.objects.get(pk=profile.pk).likes == (1 if to_the_database else 0)
        assert waited_on == ([] if to_the_database else [True])
        settle_and_flush([profile.pk])
    assert Profile.objects.get(pk=profile.pk).likes == 2
