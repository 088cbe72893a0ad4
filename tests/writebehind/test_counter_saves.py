"""save() of a model with counters writes each counter's change relative to the value the
instance showed, so pending and flushed increments are neither lost nor counted twice."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_cachestrat import drain
from tests.factories import ProfileFactory
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def db_likes(pk: int) -> int:
    return Profile.objects.values_list("likes", flat=True).get(pk=pk)


def read_with_pending(likes: int, pending: int) -> Profile:
    """A row of ``likes`` with ``pending`` increments in Redis, read through ``cached``."""
    pk = ProfileFactory(likes=likes).pk
    Profile.cached.incr(pk, "likes", by=pending)
    row = Profile.cached.get(pk=pk)
    assert row.likes == likes + pending
    return row


def test_a_flush_between_the_read_and_the_save_loses_nothing():
    row = read_with_pending(10, 5)
    drain.drain_all()
    row.age = 3
    row.save()
    assert db_likes(row.pk) == 15


def test_refresh_then_save_keeps_increments_already_flushed():
    row = read_with_pending(10, 5)
    drain.drain_all()
    row.refresh_from_db()
    row.save()
    drain.drain_all()
    assert db_likes(row.pk) == 15


def test_refresh_then_save_keeps_increments_still_pending():
    row = read_with_pending(10, 5)
    row.refresh_from_db()
    assert row.likes == 10
    row.likes += 1
    row.save()
    drain.drain_all()
    assert db_likes(row.pk) == 16


def test_plus_equals_on_a_cached_instance_counts_pending_increments_once():
    row = read_with_pending(10, 5)
    row.likes += 1
    row.save()
    assert row.likes == 16  # the instance keeps the value it was given
    assert Profile.cached.get(pk=row.pk).likes == 16
    drain.drain_all()
    assert db_likes(row.pk) == 16


def test_an_instance_read_from_the_database_keeps_increments_flushed_meanwhile():
    pk = ProfileFactory(likes=10).pk
    row = Profile.objects.get(pk=pk)
    Profile.cached.incr(pk, "likes", by=5)
    drain.drain_all()
    row.likes += 1
    row.save()
    assert db_likes(pk) == 16


def test_a_counter_set_by_hand_moves_by_the_difference_to_what_was_shown():
    row = read_with_pending(10, 5)
    row.likes = 20
    row.save()
    drain.drain_all()
    assert db_likes(row.pk) == 20


def test_update_fields_without_the_counter_leaves_it_for_a_later_save():
    row = read_with_pending(10, 5)
    row.likes += 1
    row.age = 3
    row.save(update_fields=["age"])
    assert db_likes(row.pk) == 10
    row.save(update_fields=["likes"])
    assert db_likes(row.pk) == 11
    row.save()  # the change is written once
    drain.drain_all()
    assert db_likes(row.pk) == 16


def test_saving_twice_writes_the_change_once():
    row = read_with_pending(10, 5)
    row.likes += 2
    row.save()
    row.save()
    with transaction.atomic():
        row.save()
    drain.drain_all()
    assert db_likes(row.pk) == 17


def test_a_created_row_is_inserted_with_its_value_then_saved_relative_to_it():
    row = Profile.objects.create(username="new", likes=3)
    assert db_likes(row.pk) == 3
    Profile.cached.incr(row.pk, "likes", by=2)
    drain.drain_all()
    row.likes += 1
    row.save()
    assert db_likes(row.pk) == 6


def test_an_instance_built_by_hand_for_an_existing_row_writes_its_value():
    pk = ProfileFactory(likes=10, username="built").pk
    Profile(pk=pk, username="built", likes=4).save()
    assert db_likes(pk) == 4


def test_a_row_deleted_under_a_loaded_instance_is_inserted_again_by_save():
    row = read_with_pending(10, 5)
    Profile.objects.filter(pk=row.pk).delete()
    row.likes += 1
    row.save()  # the UPDATE finds no row: Django inserts it, with the value shown
    assert db_likes(row.pk) == 16


def test_a_positive_counter_set_below_its_pending_increments_stays_at_zero():
    row = read_with_pending(10, 5)
    row.likes = 0
    row.save()  # likes - 15 would be negative: clamped at 0, as flushes are
    assert db_likes(row.pk) == 0


def test_refreshing_other_fields_keeps_the_change_made_to_a_counter():
    row = read_with_pending(10, 5)
    row.likes += 1
    row.refresh_from_db(fields=["age"])
    row.save()
    drain.drain_all()
    assert db_likes(row.pk) == 16


def test_a_deferred_counter_shows_the_value_it_loads():
    pk = ProfileFactory(likes=10).pk
    row = Profile.objects.only("age").get(pk=pk)
    Profile.cached.incr(pk, "likes", by=5)
    drain.drain_all()
    row.likes += 1  # loads 15, then 16
    Profile.cached.incr(pk, "likes", by=2)
    drain.drain_all()
    row.save()
    assert db_likes(pk) == 18


def test_a_save_invalidates_its_row_only(redis_client):
    """On Django 6 the counter's expression makes save() add its own RETURNING clause;
    the row is still named, not the whole model flushed."""
    row = read_with_pending(10, 5)
    keys = Profile.cached.plan.keys
    generation = redis_client.get(keys.generation)
    row.likes += 1
    row.save()
    assert redis_client.get(keys.row(row.pk)) is None
    assert redis_client.get(keys.generation) == generation
