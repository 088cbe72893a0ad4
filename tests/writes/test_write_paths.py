"""Every write path invalidates: bulk, queryset, cascade, m2m and get-or-create writes."""

from __future__ import annotations

import msgpack
import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from django_cachestrat import invalidation
from django_cachestrat.plan import plan_for
from django_cachestrat.serializers import ROW
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries, queries_raising
from tests.testapp.models import Club, Comment, Membership, Profile, Team

pytestmark = pytest.mark.django_db


def cached_ages(profiles):
    return {pk: p.age for pk, p in Profile.cached.get_many([p.pk for p in profiles]).items()}


def warm_all(profiles):
    Profile.cached.get_many([p.pk for p in profiles])
    assert count_queries(lambda: Profile.cached.get_many([p.pk for p in profiles]))[1] == 0


def test_queryset_update_invalidates_exactly_the_changed_rows():
    changed = ProfileFactory.create_batch(3, age=1)
    kept = ProfileFactory(age=50)
    warm_all([*changed, kept])
    Profile.objects.filter(age__lt=10).update(age=F("age") + 1)
    assert cached_ages(changed) == {p.pk: 2 for p in changed}
    assert count_queries(lambda: Profile.cached.get(pk=kept.pk))[1] == 0  # still cached


def test_queryset_update_in_a_transaction_reads_its_own_writes():
    profiles = ProfileFactory.create_batch(2, age=1)
    warm_all(profiles)
    with transaction.atomic():
        Profile.objects.update(age=3)
        assert set(cached_ages(profiles).values()) == {3}
    assert set(cached_ages(profiles).values()) == {3}


def test_large_update_bumps_the_generation_without_loading_rows(redis_client, monkeypatch):
    monkeypatch.setattr(invalidation, "BULK_LIMIT", 1000)  # 10,000 by default
    Profile.objects.bulk_create([Profile(username=f"bulk{i}") for i in range(1200)])
    sample = list(Profile.objects.order_by("pk")[:5])
    warm_all(sample)
    before = redis_client.get(plan_for(Profile).keys.generation)
    with CaptureQueriesContext(connection) as ctx:
        Profile.objects.update(age=9)
    assert len(ctx.captured_queries) == 1  # no SELECT of the rows, only their pks returned
    assert redis_client.get(plan_for(Profile).keys.generation) not in (None, before)
    assert set(cached_ages(sample).values()) == {9}


def test_queryset_delete_invalidates():
    profiles = ProfileFactory.create_batch(3)
    warm_all(profiles)
    Profile.objects.filter(pk__in=[p.pk for p in profiles[:2]]).delete()
    assert list(Profile.cached.get_many([p.pk for p in profiles])) == [profiles[2].pk]


def test_cascade_deletes_invalidate_the_children():
    profile = ProfileFactory()
    comment = Comment.objects.create(profile=profile, text="hi")
    Comment.cached.get(pk=comment.pk)
    profile.delete()
    with pytest.raises(Comment.DoesNotExist):
        Comment.cached.get(pk=comment.pk)


def test_set_null_on_delete_invalidates_the_referring_rows():
    team = TeamFactory()
    profile = ProfileFactory(team=team)
    Profile.cached.get(pk=profile.pk)
    team.delete()
    assert Profile.cached.get(pk=profile.pk).team_id is None


def test_bulk_create_is_visible_through_cached_absences():
    assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(username="bulk")) == 1
    assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(pk=10**6)) == 1
    Profile.objects.bulk_create([Profile(pk=10**6, username="bulk")])
    assert Profile.cached.get(username="bulk").pk == 10**6
    assert Profile.cached.get(pk=10**6).username == "bulk"


def test_bulk_create_in_a_transaction_is_read_and_never_shared(redis_client):
    Profile.cached.get_many([10**6])  # caches the absence
    with transaction.atomic():
        Profile.objects.bulk_create([Profile(pk=10**6, username="txn")])
        assert Profile.cached.get(pk=10**6).username == "txn"
        assert list(Profile.cached.get_many([10**6])) == [10**6]
        stored = redis_client.get(plan_for(Profile).keys.row(10**6))
        assert stored is None or msgpack.unpackb(stored)[0] != ROW  # no uncommitted row
    assert Profile.cached.get(pk=10**6).username == "txn"


def test_bulk_update_invalidates():
    profiles = ProfileFactory.create_batch(3, age=1)
    warm_all(profiles)
    for p in profiles:
        p.age = 40 + p.pk % 3
    Profile.objects.bulk_update(profiles, ["age"])
    assert cached_ages(profiles) == {p.pk: 40 + p.pk % 3 for p in profiles}


def test_update_of_a_unique_field_drops_its_cached_absence():
    profile = ProfileFactory(username="old")
    assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(username="new")) == 1
    Profile.objects.filter(pk=profile.pk).update(username="new")
    assert Profile.cached.get(username="new").pk == profile.pk


def test_update_or_create_and_get_or_create():
    profile = ProfileFactory(username="u", age=1)
    Profile.cached.get(pk=profile.pk)
    Profile.objects.update_or_create(username="u", defaults={"age": 2})
    assert Profile.cached.get(pk=profile.pk).age == 2
    assert queries_raising(Profile.DoesNotExist, lambda: Profile.cached.get(username="v")) == 1
    created, _ = Profile.objects.get_or_create(username="v")
    assert Profile.cached.get(username="v").pk == created.pk


def test_many_to_many_through_rows_are_invalidated():
    club = Club.objects.create(name="chess")
    a, b = ProfileFactory.create_batch(2)
    assert queries_raising(Membership.DoesNotExist, lambda: Membership.cached.get(key="a")) == 1
    club.members.add(a, through_defaults={"key": "a"})
    membership = Membership.cached.get(key="a")
    assert membership.profile_id == a.pk
    club.members.remove(a)
    with pytest.raises(Membership.DoesNotExist):
        Membership.cached.get(pk=membership.pk)
    club.members.set([a, b], through_defaults={"key": None})
    rows = Membership.objects.filter(club=club)
    assert sorted(Membership.cached.get_many([m.pk for m in rows])) == sorted(m.pk for m in rows)
    first = rows[0].pk
    club.members.clear()
    with pytest.raises(Membership.DoesNotExist):
        Membership.cached.get(pk=first)


def test_many_to_many_changes_are_seen_through_a_cached_row():
    from tests.testapp.models import Tag

    profile = ProfileFactory()
    tag = Tag.objects.create(name="x")
    cached = Profile.cached.get(pk=profile.pk)
    cached.tags.add(tag)
    assert list(Profile.cached.get(pk=profile.pk).tags.all()) == [tag]
    cached.tags.clear()
    assert list(Profile.cached.get(pk=profile.pk).tags.all()) == []


def test_truncate_flushes_the_model(redis_client):
    team = TeamFactory()
    Team.cached.get(pk=team.pk)
    with connection.cursor() as cursor:
        cursor.execute('TRUNCATE "testapp_team" CASCADE')
    with pytest.raises(Team.DoesNotExist):
        Team.cached.get(pk=team.pk)


def test_upsert_through_bulk_create_invalidates_updated_rows():
    profile = ProfileFactory(username="up", age=1)
    Profile.cached.get(pk=profile.pk)
    Profile.objects.bulk_create(
        [Profile(username="up", age=2)],
        update_conflicts=True,
        unique_fields=["username"],
        update_fields=["age"],
    )
    assert Profile.cached.get(pk=profile.pk).age == 2


def test_a_save_is_invalidated_once():
    from django_cachestrat.signals import invalidated

    profile = ProfileFactory()
    seen = []

    def receiver(sender, pks, **kw):
        seen.append(list(pks))

    invalidated.connect(receiver)
    try:
        profile.age += 1
        profile.save()
    finally:
        invalidated.disconnect(receiver)
    assert seen == [[profile.pk]]


def test_a_transaction_that_wrote_fills_nothing_until_it_commits(redis_client):
    other = ProfileFactory()
    with transaction.atomic():
        Profile.cached.get(pk=other.pk)  # nothing written yet: reads fill the shared cache
        assert redis_client.get(plan_for(Profile).keys.row(other.pk)) is not None
    redis_client.flushdb()
    with transaction.atomic():
        created = ProfileFactory()
        assert Profile.cached.get(pk=created.pk).pk == created.pk  # its own new row
        # Its writes may have changed rows it cannot name (triggers, cascades in the
        # database): what it reads now stays out of the shared cache.
        assert Profile.cached.get(pk=other.pk).pk == other.pk
        assert redis_client.get(plan_for(Profile).keys.row(other.pk)) is None
        assert redis_client.get(plan_for(Profile).keys.row(created.pk)) is None
    Profile.cached.get(pk=other.pk)
    assert redis_client.get(plan_for(Profile).keys.row(other.pk)) is not None


def test_flushed_is_sent_when_a_transaction_that_bumped_the_generation_commits():
    from django_cachestrat.signals import flushed

    seen = []

    def receiver(sender, **kw):
        seen.append(sender)

    flushed.connect(receiver)
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute('TRUNCATE "testapp_comment"')
            assert seen == []
        assert seen == [Comment]
    finally:
        flushed.disconnect(receiver)


def test_a_pk_value_that_cannot_name_a_key_flushes_the_model(redis_client):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    before = redis_client.get(plan_for(Profile).keys.generation)
    invalidation.invalidate_pks(Profile, [["not", "hashable"]], "default")
    assert redis_client.get(plan_for(Profile).keys.generation) not in (None, before)
