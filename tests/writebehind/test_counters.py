"""Write-behind counters: increments in Redis at once, reads add them, flushes apply once."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from django.db import transaction
from django.test import override_settings

from django_cachestrat import drain
from django_cachestrat.models import CounterBatch, DeadLetter
from django_cachestrat.plan import plan_for
from tests.factories import ProfileFactory
from tests.helpers import count_queries
from tests.servers import RedisServer
from tests.testapp.models import Profile

# Pending increments live in Redis only outside a test case's transaction (docs/testing.md).
pytestmark = pytest.mark.django_db(transaction=True)


def likes(pk):
    return Profile.cached.get(pk=pk).likes


def db_likes(pk):
    return Profile.objects.values_list("likes", flat=True).get(pk=pk)


def test_increments_are_read_back_at_once_and_flushed_exactly():
    profile = ProfileFactory(likes=10)
    for _ in range(5):
        Profile.cached.incr(profile.pk, "likes")
    Profile.cached.incr(profile.pk, "likes", by=3)
    assert likes(profile.pk) == 18
    assert db_likes(profile.pk) == 10
    results = drain.drain_all()
    assert [(r.rows, r.increments) for r in results] == [(1, 8)]
    batch = CounterBatch.objects.get()
    assert (batch.rows, batch.increments, batch.model) == (1, 8, "testapp.profile")
    assert batch.duration_ms > 0
    assert db_likes(profile.pk) == 18
    assert likes(profile.pk) == 18  # no double count after the flush
    assert drain.drain_all() == []


def test_get_many_adds_pending_increments_of_every_row():
    profiles = ProfileFactory.create_batch(20, likes=1)
    for i, p in enumerate(profiles):
        Profile.cached.incr(p.pk, "likes", by=i)
    got = Profile.cached.get_many([p.pk for p in profiles])
    assert {pk: p.likes for pk, p in got.items()} == {p.pk: 1 + i for i, p in enumerate(profiles)}


def test_reads_stay_exact_at_every_step_of_a_flush():
    profile = ProfileFactory(likes=100)
    plan = plan_for(Profile)
    Profile.cached.incr(profile.pk, "likes", by=7)
    index = plan.keys.stripe_of(profile.pk, plan.stripes)
    claimed = drain.claim(plan, index)
    assert claimed is not None
    result, deltas = claimed
    Profile.cached.incr(profile.pk, "likes", by=1)  # pending again, beside the batch
    assert likes(profile.pk) == 108  # claimed and pending, none applied
    drain.apply(plan, result, deltas)
    assert db_likes(profile.pk) == 107
    assert likes(profile.pk) == 108  # applied, not yet acknowledged: counted once
    drain.acknowledge(plan, index, result.batch_id)
    assert likes(profile.pk) == 108
    drain.drain_all()
    assert db_likes(profile.pk) == likes(profile.pk) == 108


def test_cached_row_and_pending_do_not_double_count_across_a_flush():
    profile = ProfileFactory(likes=0)
    Profile.cached.get(pk=profile.pk)  # the row is cached with likes=0
    Profile.cached.incr(profile.pk, "likes", by=2)
    drain.drain_all()
    assert likes(profile.pk) == 2
    assert count_queries(lambda: likes(profile.pk))[1] == 0  # refilled once, then hits


@override_settings(CACHESTRAT={"WRITE_BEHIND": {"RECLAIM_AFTER": 60}})
def test_a_batch_left_by_a_dead_flusher_is_reclaimed_and_applied_once():
    profile = ProfileFactory(likes=0)
    plan = plan_for(Profile)
    Profile.cached.incr(profile.pk, "likes", by=5)
    index = plan.keys.stripe_of(profile.pk, plan.stripes)
    assert drain.claim(plan, index) is not None  # ... and the flusher dies here
    assert drain.drain_all() == []  # too early to reclaim
    assert likes(profile.pk) == 5
    time.sleep(0.25)
    with override_settings(CACHESTRAT={"WRITE_BEHIND": {"RECLAIM_AFTER": 0.2}}):
        (result,) = drain.drain_all()  # the claim is older than RECLAIM_AFTER now
    assert result.reclaimed and not result.duplicate
    assert db_likes(profile.pk) == likes(profile.pk) == 5


@override_settings(CACHESTRAT={"WRITE_BEHIND": {"RECLAIM_AFTER": 0.2}})
def test_a_batch_committed_but_not_acknowledged_is_not_applied_twice():
    profile = ProfileFactory(likes=0)
    plan = plan_for(Profile)
    Profile.cached.incr(profile.pk, "likes", by=5)
    index = plan.keys.stripe_of(profile.pk, plan.stripes)
    result, deltas = drain.claim(plan, index)
    drain.apply(plan, result, deltas)  # committed; the flusher dies before the ack
    assert likes(profile.pk) == 5
    time.sleep(0.25)
    (again,) = drain.drain_all()
    assert again.duplicate and again.batch_id == result.batch_id
    assert db_likes(profile.pk) == likes(profile.pk) == 5
    assert CounterBatch.objects.filter(id=result.batch_id).count() == 1


def test_increments_for_deleted_rows_become_dead_letters():
    kept, gone = ProfileFactory.create_batch(2)
    Profile.cached.incr(kept.pk, "likes", by=1)
    Profile.cached.incr(gone.pk, "likes", by=4)
    gone_pk = gone.pk
    gone.delete()
    drain.drain_all()
    letter = DeadLetter.objects.get()
    assert (letter.pk_value, letter.field, letter.delta) == (str(gone_pk), "likes", 4)
    assert db_likes(kept.pk) == 1


def test_a_positive_counter_never_goes_below_zero():
    profile = ProfileFactory(likes=2)
    Profile.cached.incr(profile.pk, "likes", by=-5)
    assert likes(profile.pk) == 0
    drain.drain_all()
    assert db_likes(profile.pk) == 0


def test_saving_a_row_read_with_pending_increments_does_not_count_them_twice():
    profile = ProfileFactory(likes=1, age=1)
    Profile.cached.incr(profile.pk, "likes", by=4)
    row = Profile.cached.get(pk=profile.pk)
    assert row.likes == 5
    row.age = 2
    row.save()
    assert row.likes == 5
    assert db_likes(profile.pk) == 1
    drain.drain_all()
    assert db_likes(profile.pk) == 5


def test_increments_inside_a_transaction_wait_for_the_commit():
    profile = ProfileFactory(likes=0)
    with pytest.raises(RuntimeError), transaction.atomic():
        Profile.cached.incr(profile.pk, "likes")
        raise RuntimeError
    with transaction.atomic():
        Profile.cached.incr(profile.pk, "likes", by=2)
    drain.drain_all()
    assert db_likes(profile.pk) == 2


def test_increments_go_to_the_database_while_redis_is_down():
    server = RedisServer()
    caches = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": server.url,
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.2},
        }
    }
    profile = ProfileFactory(likes=0)
    with override_settings(CACHES=caches):  # nothing listens on that port
        Profile.cached.incr(profile.pk, "likes", by=3)
        Profile.cached.incr(profile.pk, "likes", by=-1)
        assert likes(profile.pk) == 2
    assert db_likes(profile.pk) == 2


def test_pending_increments_are_striped_over_keys_in_one_slot_each(redis_client):
    profiles = ProfileFactory.create_batch(64)
    for p in profiles:
        Profile.cached.incr(p.pk, "likes")
    plan = plan_for(Profile)
    stripes = {plan.keys.stripe_of(p.pk, plan.stripes) for p in profiles}
    assert len(stripes) == plan.stripes
    for index in stripes:
        keys = plan.keys.stripe(index)
        assert redis_client.exists(keys.pending)
        tags = {key[key.index("{") : key.index("}") + 1] for key in keys}
        assert len(tags) == 1  # one hash tag: one Redis Cluster slot per stripe


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((1, "age"), ValueError, "'age' is not a counter"),
        ((1, "likes", 1.5), TypeError, "by must be an int, not float"),
        ((1, "likes", True), TypeError, "by must be an int, not bool"),
        (("x", "likes"), ValueError, "'x' is not a valid value"),
    ],
)
def test_bad_increments_raise_clear_errors(args, error, message):
    with pytest.raises(error, match=message):
        Profile.cached.incr(*args)


def test_every_check_holds_once_a_counter_has_been_used():
    # The first increment keeps the counter's range on the plan: later calls still check
    # the field, the type and the range of what they are given.
    profile = ProfileFactory(likes=1)
    Profile.cached.incr(profile.pk, "likes")
    with pytest.raises(ValueError, match="'age' is not a counter"):
        Profile.cached.incr(profile.pk, "age")
    with pytest.raises(ValueError, match=r"\['likes'\] is not a counter"):
        Profile.cached.incr(profile.pk, ["likes"])
    with pytest.raises(TypeError, match="by must be an int, not bool"):
        Profile.cached.incr(profile.pk, "likes", True)
    with pytest.raises(ValueError, match="by=9223372036854775807 is out of range"):
        Profile.cached.incr(profile.pk, "likes", 2**63 - 1)
    Profile.cached.incr(str(profile.pk), "likes", by=2)  # the pk as text: the same row
    assert likes(profile.pk) == 4
    assert [(r.rows, r.increments) for r in drain.drain_all()] == [(1, 3)]
    assert db_likes(profile.pk) == 4


def test_a_refreshed_or_reassigned_counter_is_saved_as_a_change_from_what_was_shown():
    profile = ProfileFactory(likes=1)
    Profile.cached.incr(profile.pk, "likes", by=4)
    row = Profile.cached.get(pk=profile.pk)
    row.refresh_from_db()
    assert row.likes == 1
    row.save()
    assert db_likes(profile.pk) == 1
    row = Profile.cached.get(pk=profile.pk)
    assert row.likes == 5
    row.likes = 10  # set by hand: +5 from what the row showed
    row.save()
    assert db_likes(profile.pk) == 6
    drain.drain_all()
    assert db_likes(profile.pk) == 10


def test_the_portable_flush_handles_positive_counters():
    profiles = ProfileFactory.create_batch(3, likes=1)
    plan = plan_for(Profile)
    rows = {p.pk: {"likes": d} for p, d in zip(profiles, (2, -5, 0), strict=True)}
    drain._update_portable(plan, rows, "default")
    assert [db_likes(p.pk) for p in profiles] == [3, 0, 1]


@override_settings(CACHESTRAT={"WRITE_BEHIND": {"RECLAIM_AFTER": 0.2}})
def test_increments_queued_behind_a_reclaimed_batch_are_flushed_in_the_same_run():
    profile = ProfileFactory(likes=0)
    plan = plan_for(Profile)
    Profile.cached.incr(profile.pk, "likes", by=1)
    drain.claim(plan, plan.keys.stripe_of(profile.pk, plan.stripes))  # the flusher dies
    Profile.cached.incr(profile.pk, "likes", by=2)
    time.sleep(0.25)
    results = drain.drain_all()
    assert [r.reclaimed for r in results] == [True, False]
    assert db_likes(profile.pk) == 3


def test_a_settled_increment_that_arrives_late_is_ignored(redis_client):
    from django_cachestrat.scripts import scripts

    plan = plan_for(Profile)
    stripe = plan.keys.stripe(0)
    sequence = stripe.sequence("client-a")
    day = 86_400_000
    # The reply was lost and the increment went to the database: settle it first...
    settle = (stripe.pending, sequence, stripe.settled(sequence, 7))
    assert scripts.cancel(redis_client, settle, ("likes:1", 5, 7, day)) == 0
    assert scripts.cancel(redis_client, settle, ("likes:1", 5, 7, day)) == 2  # settled once
    # ...then the original command reaches Redis: a duplicate, not applied.
    args = ("likes:1", 5, 1000, 1000, 7, day)
    out = scripts.incr(redis_client, (stripe.pending, stripe.throttle, sequence), args)
    assert out == [-1, 0]
    assert redis_client.hget(stripe.pending, "likes:1") is None
    # The next increment of that client counts.
    args = ("likes:1", 2, 1000, 1000, 8, day)
    scripts.incr(redis_client, (stripe.pending, stripe.throttle, sequence), args)
    assert redis_client.hget(stripe.pending, "likes:1") == b"2"


def test_the_drain_s_former_names_still_import_with_a_deprecation_warning():
    from django_cachestrat import drain
    from django_cachestrat import flush as former

    with pytest.warns(DeprecationWarning, match=r"flush\.flush_all is deprecated.*drain_all"):
        assert former.flush_all is drain.drain_all
    with pytest.warns(DeprecationWarning):
        assert former.FlushError is drain.DrainError
    with pytest.raises(AttributeError):
        former.flush_everything  # noqa: B018


def incr_script(redis_client: Any, sequence: str, field: str, by: int, number: int) -> Any:
    """``incr.lua`` on stripe 0 with a batch size of 2 and a throttle of a minute."""
    from django_cachestrat.scripts import scripts

    stripe = plan_for(Profile).keys.stripe(0)
    keys = (stripe.pending, stripe.throttle, stripe.sequence(sequence))
    return scripts.incr(redis_client, keys, (field, by, 2, 60_000, number, 86_400_000))


def test_only_a_new_entry_fills_the_stripe_and_one_caller_is_asked_to_flush(redis_client):
    """The stripe is counted when an increment makes a new entry (an entry already
    pending cannot make it fuller), and the throttle lets one caller a second ask for the
    flush once it holds the batch size."""
    assert incr_script(redis_client, "a", "likes:1", 1, 1) == [1, 0]
    assert incr_script(redis_client, "a", "likes:1", 1, 2) == [0, 0]  # not counted
    assert incr_script(redis_client, "a", "likes:2", 3, 3) == [2, 1]  # full: flush
    assert incr_script(redis_client, "b", "likes:3", 1, 1) == [3, 0]  # throttled
    assert incr_script(redis_client, "b", "likes:1", -2, 2) == [0, 0]  # back to zero
    assert incr_script(redis_client, "b", "likes:1", 5, 3) == [3, 0]  # counted again
    stripe = plan_for(Profile).keys.stripe(0)
    assert redis_client.hgetall(stripe.pending) == {
        b"likes:1": b"5",
        b"likes:2": b"3",
        b"likes:3": b"1",
    }


def test_a_repeated_or_older_number_changes_nothing_and_the_last_number_stays(redis_client):
    stripe = plan_for(Profile).keys.stripe(0)
    assert incr_script(redis_client, "a", "likes:1", 1, 8) == [1, 0]
    assert incr_script(redis_client, "a", "likes:1", 1, 8) == [-1, 0]  # a retry
    assert incr_script(redis_client, "a", "likes:1", 1, 3) == [-1, 0]  # an older one
    assert redis_client.get(stripe.sequence("a")) == b"8"
    assert 0 < redis_client.pttl(stripe.sequence("a")) <= 86_400_000
    assert redis_client.hget(stripe.pending, "likes:1") == b"1"


def test_an_increment_past_64_bits_is_refused_and_settles_as_not_applied(redis_client):
    """HINCRBY refuses a sum past 64 bits: the increment's number is not recorded either,
    so settling it (after its error reached the caller) finds it was not applied."""
    from django_cachestrat.scripts import scripts

    stripe = plan_for(Profile).keys.stripe(0)
    sequence = stripe.sequence("a")
    assert incr_script(redis_client, "a", "likes:1", 2**62, 4) == [1, 0]
    with pytest.raises(redis.ResponseError, match="overflow"):
        incr_script(redis_client, "a", "likes:1", 2**62, 5)
    assert redis_client.get(sequence) == b"4"
    with pytest.raises(redis.ResponseError, match="overflow"):
        incr_script(redis_client, "b", "likes:1", 2**62, 1)  # no number before it
    assert redis_client.get(stripe.sequence("b")) is None
    settle = (stripe.pending, sequence, stripe.settled(sequence, 5))
    assert scripts.cancel(redis_client, settle, ("likes:1", 2**62, 5, 86_400_000)) == 0
    assert redis_client.hget(stripe.pending, "likes:1") == str(2**62).encode()
