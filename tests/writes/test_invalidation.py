"""Delete-on-save invalidation: every save and delete drops the row, lookups stay honest."""

from __future__ import annotations

import psycopg
import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from django_cachestrat.plan import plan_for
from django_cachestrat.signals import invalidated
from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import count_queries
from tests.testapp.models import Place, Profile, ProfileProxy, Restaurant, Team

pytestmark = pytest.mark.django_db


def warm(model, pk):
    model.cached.get(pk=pk)
    assert count_queries(lambda: model.cached.get(pk=pk))[1] == 0


def test_save_invalidates_and_next_read_sees_the_new_row(redis_client):
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    profile.age = 2
    profile.save()
    assert redis_client.get(plan_for(Profile).keys.row(profile.pk)) is None
    got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert (got.age, n) == (2, 1)


def test_save_with_update_fields_invalidates():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    profile.age = 5
    profile.save(update_fields=["age"])
    assert Profile.cached.get(pk=profile.pk).age == 5


def test_delete_invalidates_and_the_row_is_then_missing():
    profile = ProfileFactory()
    warm(Profile, profile.pk)
    pk = profile.pk
    profile.delete()
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(pk=pk)


def test_renamed_lookup_no_longer_resolves():
    profile = ProfileFactory(username="jane")
    assert Profile.cached.get(username="jane").pk == profile.pk
    profile.username = "janet"
    profile.save()
    with pytest.raises(Profile.DoesNotExist):
        Profile.cached.get(username="jane")
    assert Profile.cached.get(username="janet").pk == profile.pk


def test_swapped_lookup_values_resolve_to_the_right_rows():
    a = ProfileFactory(username="a")
    b = ProfileFactory(username="b")
    assert Profile.cached.get(username="a").pk == a.pk
    with transaction.atomic():
        a.username = "tmp"
        a.save()
        b.username = "a"
        b.save()
    assert Profile.cached.get(username="a").pk == b.pk


def test_saving_through_a_proxy_invalidates_the_concrete_rows():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    proxy = ProfileProxy.objects.get(pk=profile.pk)
    proxy.age = 9
    proxy.save()
    assert Profile.cached.get(pk=profile.pk).age == 9


def test_multi_table_inheritance_parent_and_child_invalidate_each_other():
    restaurant = Restaurant.objects.create(name="Chez", stars=1)
    warm(Restaurant, restaurant.pk)
    warm(Place, restaurant.pk)
    place = Place.objects.get(pk=restaurant.pk)
    place.name = "Chez Nous"
    place.save()  # only the parent table changes, yet the child's cached row includes it
    assert Restaurant.cached.get(pk=restaurant.pk).name == "Chez Nous"
    restaurant.refresh_from_db()
    restaurant.name = "Le Chez"
    restaurant.save()
    assert Place.cached.get(pk=restaurant.pk).name == "Le Chez"


def test_foreign_key_set_null_on_delete_is_seen():
    team = TeamFactory()
    profile = ProfileFactory(team=team)
    warm(Team, team.pk)
    team.delete()
    with pytest.raises(Team.DoesNotExist):
        Team.cached.get(pk=team.pk)
    # The SET_NULL update of the profile row is a bulk UPDATE; Profile.team_id is read fresh
    # here because the profile was never cached.
    assert Profile.cached.get(pk=profile.pk).team_id is None


def test_raw_sql_through_django_is_seen():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    with connection.cursor() as cursor:
        cursor.execute("UPDATE testapp_profile SET age = 77 WHERE id = %s", [profile.pk])
    assert Profile.cached.get(pk=profile.pk).age == 77


@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_invalidate_by_hand_for_writes_outside_django():
    profile = ProfileFactory(age=1)
    warm(Profile, profile.pk)
    params = connection.get_connection_params()
    with psycopg.connect(**params, autocommit=True) as other:  # another application
        other.execute("UPDATE testapp_profile SET age = 77 WHERE id = %s", [profile.pk])
    assert Profile.cached.get(pk=profile.pk).age == 1  # invisible to this process
    Profile.cached.invalidate(profile.pk)
    assert Profile.cached.get(pk=profile.pk).age == 77


def test_flush_drops_the_whole_model_in_one_command(redis_client):
    profiles = ProfileFactory.create_batch(5)
    team = TeamFactory()
    Profile.cached.get_many([p.pk for p in profiles])
    warm(Team, team.pk)
    before = redis_client.get(plan_for(Profile).keys.generation)
    Profile.cached.flush()
    _, n = count_queries(lambda: Profile.cached.get_many([p.pk for p in profiles]))
    assert n == 1
    assert count_queries(lambda: Team.cached.get(pk=team.pk))[1] == 0  # other models kept
    after = redis_client.get(plan_for(Profile).keys.generation)
    assert before and after and after != before  # one new random value


def test_flush_also_drops_cached_lookups():
    profile = ProfileFactory(username="flushme")
    Profile.cached.get(username="flushme")
    Profile.cached.flush()
    got, n = count_queries(lambda: Profile.cached.get(username="flushme"))
    assert (got.pk, n) == (profile.pk, 2)  # the pointer and the row are both read again


def test_invalidated_signal_is_sent_after_commit():
    seen = []

    def receiver(sender, pks, **kw):
        seen.append((sender, list(pks)))

    invalidated.connect(receiver)
    try:
        with transaction.atomic():
            profile = ProfileFactory()
            assert seen == []
        assert (Profile, [profile.pk]) in seen
    finally:
        invalidated.disconnect(receiver)


def test_models_named_in_settings_are_invalidated_too():
    user = User.objects.create_user("ux")
    warm(User, user.pk)
    user.first_name = "Ursula"
    user.save()
    assert User.cached.get(pk=user.pk).first_name == "Ursula"
    user.username = "uy"
    user.save()
    with pytest.raises(User.DoesNotExist):
        User.cached.get(username="ux")


def test_uncached_models_get_no_receivers():
    from django.db.models.signals import post_delete, post_save

    from tests.testapp.models import Plain, Tag

    assert not post_save.has_listeners(Plain)
    assert not post_save.has_listeners(Tag)
    assert post_save.has_listeners(Profile)
    # No model gets a delete receiver: the statement wrapper names deleted rows, and
    # Django's fast deletes stay fast for cached models too.
    assert not post_delete.has_listeners(Profile)


def test_a_fast_delete_of_many_cached_rows_is_one_query_and_invalidates_them():
    from tests.testapp.models import Comment

    profile = ProfileFactory()
    comments = Comment.objects.bulk_create(
        Comment(profile=profile, text=f"c{i}") for i in range(2000)
    )
    Comment.cached.get_many([c.pk for c in comments[:50]])
    _, n = count_queries(lambda: Comment.objects.filter(profile=profile).delete())
    assert n == 1  # one DELETE … RETURNING, no SELECT of the rows first
    assert Comment.cached.get_many([c.pk for c in comments[:50]]) == {}
