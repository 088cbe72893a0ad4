"""Transparent mode: plain ``objects.get`` lookups served by the cache, nothing else."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q, Value
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from tests.factories import ProfileFactory, TeamFactory
from tests.helpers import assert_cached, count_queries
from tests.testapp.models import Profile, ProfileProxy, Team

pytestmark = pytest.mark.django_db(transaction=True)

TRANSPARENT = {
    "MODELS": {
        "testapp.Team": {"transparent": True},
        "testapp.Profile": {"transparent": True},
        "auth.User": {"transparent": True, "lookups": ["username"]},
    }
}


@pytest.fixture(autouse=True)
def transparent():
    with override_settings(CACHESTRAT=TRANSPARENT):
        yield


def test_objects_get_by_pk_and_lookup_use_the_cache():
    profile = ProfileFactory(username="tina")
    assert assert_cached(lambda: Profile.objects.get(pk=profile.pk)).username == "tina"
    assert count_queries(lambda: Profile.objects.get(id__exact=profile.pk))[1] == 0
    Profile.objects.get(username="tina")
    assert count_queries(lambda: Profile.objects.get(username="tina"))[1] == 0


def test_proxy_managers_are_transparent_too():
    profile = ProfileFactory()
    Profile.objects.get(pk=profile.pk)
    got, n = count_queries(lambda: ProfileProxy.objects.get(pk=profile.pk))
    assert (type(got), n) == (ProfileProxy, 0)


@pytest.mark.parametrize(
    "query",
    [
        lambda t, p: Team.objects.filter(name__startswith="t").get(pk=t),
        lambda t, p: Team.objects.only("name").get(pk=t),
        lambda t, p: Team.objects.defer("name").get(pk=t),
        lambda t, p: Team.objects.annotate(n=Value(1)).get(pk=t),
        lambda t, p: Team.objects.values("name").get(pk=t),
        lambda t, p: Team.objects.prefetch_related("profile_set").get(pk=t),
        lambda t, p: Team.objects.get(name="team", pk=t),
        lambda t, p: Team.objects.extra(select={"x": "1"}).get(pk=t),
        lambda t, p: Team.objects.distinct().get(pk=t),
        lambda t, p: Team.objects.get(Q(pk=t)),
        lambda t, p: Profile.objects.select_related("team").get(pk=p),
    ],
)
def test_anything_but_a_plain_lookup_goes_to_the_database(query):
    team = TeamFactory(name="team")
    profile = ProfileFactory(team=team)
    query(team.pk, profile.pk)
    assert count_queries(lambda: query(team.pk, profile.pk))[1] >= 1


def test_select_for_update_and_get_or_create_read_the_database():
    team = TeamFactory()
    Team.objects.get(pk=team.pk)
    with transaction.atomic():
        assert count_queries(lambda: Team.objects.select_for_update().get(pk=team.pk))[1] == 1
    got, n = count_queries(lambda: Team.objects.get_or_create(pk=team.pk))
    assert got == (team, False) and n >= 1


def test_missing_rows_and_bad_values_behave_like_the_orm():
    with pytest.raises(Team.DoesNotExist):
        Team.objects.get(pk=123456)
    with pytest.raises(ValueError, match="Field 'id' expected a number but got 'abc'"):
        Team.objects.get(pk="abc")
    with pytest.raises(Team.DoesNotExist):
        Team.objects.get(pk=None)


def test_request_user_is_loaded_from_the_cache(client):
    user = User.objects.create_user("reader", password="pw")
    client.force_login(user)
    client.get("/admin/")
    with CaptureQueriesContext(connection) as ctx:
        client.get("/admin/")
    user_queries = [q for q in ctx.captured_queries if '"auth_user"' in q["sql"]]
    assert user_queries == []


def test_switching_it_off_restores_the_managers():
    team = TeamFactory()
    with override_settings(CACHESTRAT={}):
        Team.objects.get(pk=team.pk)
        assert count_queries(lambda: Team.objects.get(pk=team.pk))[1] == 1
    Team.objects.get(pk=team.pk)
    assert count_queries(lambda: Team.objects.get(pk=team.pk))[1] == 0
