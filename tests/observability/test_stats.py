"""Statistics: counted in process, added up across processes in Redis; hit/miss signals."""

from __future__ import annotations

import multiprocessing

import pytest
from django.db import connection, connections

from django_cachestrat import signals, stats
from tests.factories import ProfileFactory
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_counters():
    stats.reset()


def _reads_in_a_child(pk: int) -> None:
    try:
        for _ in range(5):
            Profile.cached.get(pk=pk)
        stats.publish()
    finally:
        connections.close_all()


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_figures_of_every_process_add_up():
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)  # miss and fill here
    Profile.cached.get(pk=profile.pk)  # hit here
    connections.close_all()
    fork = multiprocessing.get_context("fork")
    child = fork.Process(target=_reads_in_a_child, args=(profile.pk,))
    child.start()
    child.join(30)
    summary = stats.read(minutes=5)["testapp.profile"]
    assert summary.counts["hits"] == 6
    assert summary.counts["misses"] == 1
    assert summary.counts["fills"] == 1
    assert summary.hit_ratio == pytest.approx(6 / 7)
    assert summary.median_hit_us > 0 and summary.median_fill_us > 0


def test_invalidations_are_counted():
    profile = ProfileFactory()
    profile.save()
    assert stats.read(minutes=1)["testapp.profile"].counts["invalidations"] >= 1


def test_a_fill_that_raced_an_invalidation_is_counted_as_rejected():
    profile = ProfileFactory()

    def invalidate_during_the_fill(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith("SELECT") and "testapp_profile" in sql:
            Profile.cached.invalidate(profile.pk)  # a write lands while the row is read
        return result

    before = stats.read(minutes=1).get("testapp.profile")
    rejected = before.counts.get("rejected_fills", 0) if before else 0
    with connection.execute_wrapper(invalidate_during_the_fill):
        Profile.cached.get(pk=profile.pk)
    after = stats.read(minutes=1)["testapp.profile"].counts
    assert (after.get("rejected_fills", 0), after.get("fills", 0)) == (rejected + 1, 0)


def test_hit_and_miss_signals():
    profile = ProfileFactory()
    seen = []

    def on_hit(sender, pks, **kw):
        seen.append(("hit", sender, pks))

    def on_miss(sender, pks, **kw):
        seen.append(("miss", sender, pks))

    signals.hit.connect(on_hit)
    signals.miss.connect(on_miss)
    try:
        Profile.cached.get(pk=profile.pk)
        Profile.cached.get_many([profile.pk])
    finally:
        signals.hit.disconnect(on_hit)
        signals.miss.disconnect(on_miss)
    assert seen == [("miss", Profile, [profile.pk]), ("hit", Profile, [profile.pk])]
