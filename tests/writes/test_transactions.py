"""Transactions: read your own writes, nothing uncommitted shared, rollbacks leave no trace."""

from __future__ import annotations

import threading

import pytest
from django.db import connections, transaction

from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory
from tests.helpers import count_queries
from tests.testapp.models import Profile, Tag

pytestmark = pytest.mark.django_db(transaction=True)


def in_other_thread(func):
    """Run ``func`` in a fresh thread (its own database connection) and return its result."""
    out = {}

    def run():
        try:
            out["value"] = func()
        finally:
            connections.close_all()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return out["value"]


def test_read_your_own_writes_inside_a_transaction():
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    with transaction.atomic():
        profile.age = 2
        profile.save()
        assert Profile.cached.get(pk=profile.pk).age == 2
        assert Profile.cached.get_many([profile.pk])[profile.pk].age == 2
        # Another connection must not see the uncommitted row, from the cache or otherwise.
        assert in_other_thread(lambda: Profile.cached.get(pk=profile.pk).age) == 1
    assert Profile.cached.get(pk=profile.pk).age == 2


def test_uncommitted_rows_never_reach_the_shared_cache(redis_client):
    profile = ProfileFactory(age=1)
    key = plan_for(Profile).keys.row(profile.pk)
    with transaction.atomic():
        profile.age = 2
        profile.save()
        for _ in range(3):
            Profile.cached.get(pk=profile.pk)
        assert redis_client.get(key) is None


def test_created_row_is_visible_to_its_transaction_only():
    with transaction.atomic():
        profile = ProfileFactory(username="new")
        assert Profile.cached.get(pk=profile.pk).username == "new"
        assert Profile.cached.get(username="new").pk == profile.pk
        assert in_other_thread(lambda: Profile.cached.get_many([profile.pk])) == {}
    assert Profile.cached.get(username="new").pk == profile.pk


def test_rollback_leaves_the_cache_as_it_was():
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    with pytest.raises(RuntimeError), transaction.atomic():
        profile.age = 2
        profile.save()
        raise RuntimeError("roll back")
    got, _ = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert got.age == 1
    # After the rollback the row is served from the cache again, not from the database.
    assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0


def test_rolled_back_savepoint_stops_bypassing_but_outer_writes_still_do():
    a = ProfileFactory(age=1)
    b = ProfileFactory(age=1)
    Profile.cached.get_many([a.pk, b.pk])
    with transaction.atomic():
        a.age = 2
        a.save()
        with pytest.raises(RuntimeError), transaction.atomic():
            b.age = 2
            b.save()
            raise RuntimeError
        assert Profile.cached.get(pk=a.pk).age == 2
        assert Profile.cached.get(pk=b.pk).age == 1


def test_reads_inside_a_transaction_still_use_the_cache_for_untouched_rows():
    profile = ProfileFactory()
    with transaction.atomic():
        Profile.cached.get(pk=profile.pk)
        assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0


def test_snapshot_isolation_transactions_do_not_fill(redis_client):
    from psycopg import IsolationLevel

    profile = ProfileFactory()
    key = plan_for(Profile).keys.row(profile.pk)
    conn = connections["default"]
    conn.close()
    conn.settings_dict["OPTIONS"]["isolation_level"] = IsolationLevel.REPEATABLE_READ
    try:
        with transaction.atomic():
            with conn.cursor() as cursor:
                cursor.execute("SHOW transaction_isolation")
                assert cursor.fetchone()[0] == "repeatable read"
            assert Profile.cached.get(pk=profile.pk).pk == profile.pk
            assert redis_client.get(key) is None  # an old snapshot must never be shared
        Profile.cached.get(pk=profile.pk)  # outside the transaction it fills as usual
        assert redis_client.get(key) is not None
    finally:
        conn.close()
        del conn.settings_dict["OPTIONS"]["isolation_level"]


def test_state_does_not_leak_after_commit():
    from django_cachestrat import transactions

    profile = ProfileFactory()
    with transaction.atomic():
        profile.save()
    assert transactions._local.states == {}


def test_an_on_commit_hook_that_raises_does_not_drop_the_invalidation():
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)

    def queue_a_task():  # as Celery's .delay() with the broker down
        raise ConnectionError("broker unreachable")

    with pytest.raises(ConnectionError), transaction.atomic():
        transaction.on_commit(queue_a_task)  # registered before the first cached write
        profile.age = 2
        profile.save()
    assert Profile.objects.get(pk=profile.pk).age == 2  # the write committed
    assert Profile.cached.get(pk=profile.pk).age == 2


@pytest.fixture
def trigger():
    """A database trigger: inserting a tag sets every profile's age to 99, a write the
    app never sees."""
    conn = connections["default"]
    with conn.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION cs_test_tag_trigger() RETURNS trigger AS $$ BEGIN "
            "UPDATE testapp_profile SET age = 99; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        cursor.execute(
            "CREATE TRIGGER cs_test_tag AFTER INSERT ON testapp_tag "
            "FOR EACH ROW EXECUTE FUNCTION cs_test_tag_trigger()"
        )
    yield
    with conn.cursor() as cursor:
        cursor.execute("DROP TRIGGER cs_test_tag ON testapp_tag")
        cursor.execute("DROP FUNCTION cs_test_tag_trigger()")


def test_a_transaction_with_unseen_writes_fills_nothing(trigger):
    profile = ProfileFactory(age=1)
    with pytest.raises(RuntimeError), transaction.atomic():
        Tag.objects.create(name="x")  # the trigger changes the profile inside the transaction
        assert Profile.cached.get(pk=profile.pk).age == 99
        raise RuntimeError("roll back")
    assert Profile.objects.get(pk=profile.pk).age == 1
    assert Profile.cached.get(pk=profile.pk).age == 1


def test_manual_transactions_fill_nothing():
    profile = ProfileFactory(age=1)
    transaction.set_autocommit(False)
    try:
        Profile.objects.filter(pk=profile.pk).update(age=5)
        assert Profile.cached.get(pk=profile.pk).age == 5
        transaction.rollback()
    finally:
        transaction.set_autocommit(True)
    assert Profile.cached.get(pk=profile.pk).age == 1


def test_flush_inside_a_transaction_waits_for_the_commit():
    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)
    with transaction.atomic():
        # A write the app cannot see (a raw driver cursor), then a flush by hand.
        with connections["default"].connection.cursor() as raw:
            raw.execute("UPDATE testapp_profile SET age = 2 WHERE id = %s", [profile.pk])
        Profile.cached.flush()
        assert Profile.cached.get(pk=profile.pk).age == 2  # its own writes
        # Meanwhile another connection reads the committed row and may fill it.
        assert in_other_thread(lambda: Profile.cached.get(pk=profile.pk).age) == 1
    assert Profile.cached.get(pk=profile.pk).age == 2


def test_a_failing_commit_hook_costs_no_other_its_work():
    from django_cachestrat import drain
    from django_cachestrat.signals import invalidated

    profile = ProfileFactory(age=1)
    Profile.cached.get(pk=profile.pk)

    def fails(**kwargs):
        raise ValueError("a receiver's bug")

    invalidated.connect(fails)
    try:
        with transaction.atomic():
            profile.age = 2
            profile.save()
            Profile.cached.incr(profile.pk, "likes", by=1)
    finally:
        invalidated.disconnect(fails)
    assert Profile.cached.get(pk=profile.pk).age == 2
    drain.drain_model(Profile)
    assert Profile.objects.get(pk=profile.pk).likes == 1
