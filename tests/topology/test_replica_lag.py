"""Invariant 11 on a real streaming replica: a fill that reads a lagging replica never
stores a row older than a write committed on its primary (tests/pg_replica.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import override_settings

from django_cachestrat import replicas
from tests import pg_replica, routers
from tests.race import Naive, Ours, Pauses, run
from tests.testapp.models import Profile, Tag, Team

pytestmark = [
    pytest.mark.skipif(
        not pg_replica.is_available(),
        reason="needs PostgreSQL 15 binaries and root (to run them as the postgres user)",
    ),
]

PRIMARY, REPLICA = "lag_primary", "lag_replica"
GUARDED = {"REPLICAS": {REPLICA: PRIMARY}, "REPLICA_LAG": 5}


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[pg_replica.Server, pg_replica.Server]]:
    with pg_replica.primary_and_replica("cs_lag") as servers:
        yield servers


@pytest.fixture
def lag_aliases(cluster, django_db_blocker) -> Iterator[None]:
    """Aliases for the primary and its replica. The tests use no other database, so no
    test database and no test case: pytest-django's blocker is lifted for these."""
    primary, replica = cluster
    for alias, server in ((PRIMARY, primary), (REPLICA, replica)):
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "cs_lag",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(server.port),
        }
        both = {"default": connections.settings["default"], alias: config}
        connections.settings[alias] = connections.configure_settings(both)[alias]
    try:
        with django_db_blocker.unblock():
            yield
    finally:
        for alias in (PRIMARY, REPLICA):
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]


@pytest.fixture
def lagging(lag_aliases) -> Iterator[None]:
    """The test app's tables on the primary, and a router that reads from the replica and
    writes to the primary, in every thread."""
    with connections[PRIMARY].schema_editor() as editor:
        for model in (Team, Tag, Profile):
            editor.create_model(model)
    try:
        with routers.in_every_thread(REPLICA, PRIMARY):
            yield
    finally:
        connections.close_all()
        with connections[PRIMARY].schema_editor() as editor:
            for model in (Profile, Tag, Team):
                editor.delete_model(model)


def _new_profile() -> int:
    profile = Profile.objects.using(PRIMARY).create(username="lagging", age=0)
    pg_replica.wait_replayed(PRIMARY, REPLICA)
    return int(profile.pk)


def test_the_replica_lags(lagging):
    pk = _new_profile()
    with pg_replica.replay_paused(REPLICA):
        Profile.objects.using(PRIMARY).filter(pk=pk).update(age=1)
        assert Profile.objects.using(REPLICA).get(pk=pk).age == 0  # not applied yet
    pg_replica.wait_replayed(PRIMARY, REPLICA)
    assert Profile.objects.using(REPLICA).get(pk=pk).age == 1


def test_a_miss_right_after_a_write_stores_the_primary_row(lagging):
    pk = _new_profile()
    with override_settings(CACHESTRAT=GUARDED):
        with pg_replica.replay_paused(REPLICA):
            assert Profile.cached.get(pk=pk).age == 0
            Profile.objects.filter(pk=pk).update(age=1)  # routed to the primary
            assert Profile.objects.using(REPLICA).get(pk=pk).age == 0
            assert Profile.cached.get(pk=pk).age == 1  # the replica still says 0
        pg_replica.wait_replayed(PRIMARY, REPLICA)
        found = Profile.cached.get(pk=pk)
        assert (found.age, found._state.db) == (1, REPLICA)


def test_a_lookup_and_a_new_row_are_read_from_the_primary_while_marked(lagging):
    pk = _new_profile()
    with override_settings(CACHESTRAT=GUARDED):
        with pytest.raises(Profile.DoesNotExist):
            Profile.cached.get(username="fresh")
        Profile.objects.filter(pk=pk).update(username="fresh")
        assert Profile.cached.get(username="fresh").pk == pk
        new = Profile.objects.create(username="newcomer")
        assert Profile.cached.get(pk=new.pk).username == "newcomer"


def test_without_the_guard_a_fill_from_the_replica_is_stale(lagging):
    """The same steps with the replica declared but its markers ignored: the old row is
    cached after the write (what the guard prevents)."""
    pk = _new_profile()
    with override_settings(CACHESTRAT=GUARDED), pg_replica.replay_paused(REPLICA):
        Profile.cached.get(pk=pk)
        Profile.objects.filter(pk=pk).update(age=1)
        original = replicas._mget
        replicas._mget = lambda keys: [None] * len(keys)  # type: ignore[assignment]
        try:
            assert Profile.cached.get(pk=pk).age == 0
        finally:
            replicas._mget = original
    with override_settings(CACHESTRAT=GUARDED):
        pg_replica.wait_replayed(PRIMARY, REPLICA)
        assert Profile.cached.get(pk=pk).age == 0  # stored stale, and still served


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_no_stale_read_through_a_lagging_replica(lagging, processes):
    pk = _new_profile()
    with override_settings(CACHESTRAT=GUARDED):
        tally = run(Ours(Pauses(0.3, max_ms=3)), pk, writes=150, readers=3, processes=processes)
    print(f"ours, {processes=}: {tally.reads.value} reads, {tally.stale.value} stale")
    assert tally.writes.value == 150 and tally.reads.value > 150
    assert tally.stale.value == 0, (tally.reads.value, tally.stale.value)


def test_the_harness_catches_a_naive_cache_on_the_same_replica(lagging):
    pk = _new_profile()
    tally = run(Naive(Pauses(0.3, max_ms=3)), pk, writes=150, readers=3, processes=False)
    print(f"naive: {tally.reads.value} reads, {tally.stale.value} stale")
    assert tally.stale.value > 10, (tally.reads.value, tally.stale.value)


def test_a_replica_not_declared_is_warned_about_once(lagging, caplog):
    connections[REPLICA].close()
    with override_settings(CACHESTRAT={}), caplog.at_level("WARNING", "django_cachestrat"):
        Profile.objects.using(REPLICA).exists()
        connections[REPLICA].close()
        Profile.objects.using(REPLICA).exists()
        Profile.objects.using(PRIMARY).exists()
    warnings = [r.getMessage() for r in caplog.records if "is a replica" in r.getMessage()]
    assert len(warnings) == 1 and "'lag_replica'" in warnings[0]
    with override_settings(CACHESTRAT=GUARDED), caplog.at_level("WARNING", "django_cachestrat"):
        caplog.clear()
        connections[REPLICA].close()
        Profile.objects.using(REPLICA).exists()
    assert not [r for r in caplog.records if "is a replica" in r.getMessage()]
