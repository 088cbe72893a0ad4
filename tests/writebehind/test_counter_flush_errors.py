"""No increment blocks the others: bad input is refused at incr(), an increment the database
refuses becomes a dead letter, a failing stripe or model leaves the rest flushed."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings

from django_cachestrat import drain
from django_cachestrat.client import connection as redis_connection
from django_cachestrat.models import CounterBatch, DeadLetter
from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory
from tests.testapp.models import Place, Profile, Restaurant

pytestmark = pytest.mark.django_db(transaction=True)

INT_MAX = 2**31 - 1
RESTAURANT_VISITS = {"MODELS": {"testapp.Restaurant": {"counters": ["visits"]}}}


def db_likes(pk: int) -> int:
    return Profile.objects.values_list("likes", flat=True).get(pk=pk)


def in_flight(model: type) -> list[str]:
    plan = plan_for(model)
    keys = [key for i in range(plan.stripes) for key in plan.keys.stripe(i)[:3]]
    return [key for key in keys if redis_connection().exists(key)]


@pytest.mark.parametrize("by", [INT_MAX + 1, -INT_MAX - 1, 2**70])
def test_an_increment_the_column_cannot_hold_is_refused(by):
    pk = ProfileFactory().pk
    message = rf"by={by} is out of range for PositiveIntegerField 'likes' \(-{INT_MAX} to {INT_MAX}"
    with pytest.raises(ValueError, match=message):
        Profile.cached.incr(pk, "likes", by=by)
    assert not in_flight(Profile)


@override_settings(CACHESTRAT={"WRITE_BEHIND": {"STRIPES": 1}})
def test_a_row_that_would_overflow_is_a_dead_letter_and_the_others_are_applied():
    full, ok, other = ProfileFactory(likes=INT_MAX - 10), ProfileFactory(), ProfileFactory()
    Profile.cached.incr(full.pk, "likes", by=100)  # in range, but the sum is not
    Profile.cached.incr(ok.pk, "likes", by=1)
    Profile.cached.incr(other.pk, "likes", by=2)
    (result,) = drain.drain_all()
    assert (result.rows, result.dead_letters) == (2, 1)
    assert (db_likes(full.pk), db_likes(ok.pk), db_likes(other.pk)) == (INT_MAX - 10, 1, 2)
    letter = DeadLetter.objects.get()
    assert (letter.pk_value, letter.field, letter.delta) == (str(full.pk), "likes", 100)
    assert "out of range" in letter.reason
    assert not in_flight(Profile)
    Profile.cached.incr(ok.pk, "likes", by=1)  # the stripe flushes as before
    drain.drain_all()
    assert db_likes(ok.pk) == 2


def test_a_counter_whose_column_is_in_the_parent_table_is_flushed():
    with override_settings(CACHESTRAT=RESTAURANT_VISITS):
        restaurant = Restaurant.objects.create(name="Chez", visits=1)
        Restaurant.cached.incr(restaurant.pk, "visits", by=2)
        assert Restaurant.cached.get(pk=restaurant.pk).visits == 3
        drain.drain_all()
        assert Place.objects.get(pk=restaurant.pk).visits == 3
        assert not in_flight(Restaurant)
        row = Restaurant.cached.get(pk=restaurant.pk)
        Restaurant.cached.incr(restaurant.pk, "visits", by=5)
        row.visits += 1
        row.save()
        drain.drain_all()
        assert Place.objects.get(pk=restaurant.pk).visits == 9


FREEZE = """
CREATE FUNCTION cs_frozen() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'likes are frozen'; END $$ LANGUAGE plpgsql;
CREATE TRIGGER cs_frozen BEFORE UPDATE OF likes ON testapp_profile
FOR EACH ROW EXECUTE FUNCTION cs_frozen();
"""
THAW = "DROP TRIGGER cs_frozen ON testapp_profile; DROP FUNCTION cs_frozen();"


def two_stripes(count: int = 2) -> list[int]:
    """Profiles whose increments fall in different stripes."""
    plan = plan_for(Profile)
    seen: dict[int, int] = {}
    while len(seen) < count:
        pk = ProfileFactory().pk
        seen.setdefault(plan.keys.stripe_of(pk, plan.stripes), pk)
    return list(seen.values())


def test_flush_all_flushes_every_model_and_reports_every_error():
    options = {**RESTAURANT_VISITS, "WRITE_BEHIND": {"RECLAIM_AFTER": 0.2}}
    with override_settings(CACHESTRAT={**settings.CACHESTRAT, **options}):
        pks = two_stripes()
        restaurant = Restaurant.objects.create(name="Chez")
        for pk in pks:
            Profile.cached.incr(pk, "likes", by=1)
        Restaurant.cached.incr(restaurant.pk, "visits", by=4)
        with connection.cursor() as cursor:
            cursor.execute(FREEZE)
        try:
            with pytest.raises(drain.DrainError) as raised:
                drain.drain_all()
        finally:
            with connection.cursor() as cursor:
                cursor.execute(THAW)
        assert Place.objects.get(pk=restaurant.pk).visits == 4  # flushed all the same
        errors = raised.value.errors
        assert len(errors) == 2, errors
        assert {(e.model, type(e.error).__name__) for e in errors} == {
            ("testapp.profile", "ProgrammingError")
        }
        assert "likes are frozen" in str(raised.value)
        assert [r.model for r in raised.value.results] == ["testapp.restaurant"]
        time.sleep(0.25)  # the claims left by the failed stripes can be reclaimed
        drain.drain_all()
        assert [db_likes(pk) for pk in pks] == [1, 1]
        assert not DeadLetter.objects.exists()
        assert CounterBatch.objects.count() == 3


def test_increments_whose_field_or_pk_no_longer_fits_are_dead_letters(redis_client):
    """Increments left in Redis by an older deploy: a counter since removed, a pk type
    since changed."""
    profile = ProfileFactory()
    Profile.cached.incr(profile.pk, "likes", by=1)
    plan = plan_for(Profile)
    pending = plan.keys.stripe(plan.keys.stripe_of(profile.pk, plan.stripes)).pending
    redis_client.hincrby(pending, f"gone:{profile.pk}", 3)
    redis_client.hincrby(pending, f"username:{profile.pk}", 4)
    redis_client.hincrby(pending, "likes:abc", 2)
    drain.drain_all()
    assert db_likes(profile.pk) == 1
    letters = {(d.field, d.pk_value, d.delta): d.reason for d in DeadLetter.objects.all()}
    assert letters == {
        ("gone", str(profile.pk), 3): "testapp.Profile has no field 'gone'",
        ("username", str(profile.pk), 4): "testapp.Profile.username is not an integer field",
        ("likes", "abc", 2): (
            "testapp.Profile.cached: id='abc' is not a valid value for BigAutoField 'id' "
            "(“abc” value must be an integer.)"
        ),
    }
    assert not in_flight(Profile)


def test_the_portable_flush_updates_a_counter_in_the_parent_table():
    with override_settings(CACHESTRAT=RESTAURANT_VISITS):
        restaurant = Restaurant.objects.create(name="Chez", visits=1)
        drain._update_portable(plan_for(Restaurant), {restaurant.pk: {"visits": 2}}, "default")
        assert Place.objects.get(pk=restaurant.pk).visits == 3
