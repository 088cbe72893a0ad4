"""Transparent mode: plain ``objects.get`` lookups served by the cache, nothing else."""

from __future__ import annotations

import copy
import pickle

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Q, QuerySet, Value
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_cachestrat import hooks as app_wiring
from django_cachestrat import transparent as transparent_mode
from tests.factories import ItemFactory, ProfileFactory, TeamFactory
from tests.helpers import assert_cached, count_queries
from tests.testapp.models import Item, Place, Profile, ProfileProxy, Restaurant, Team

pytestmark = pytest.mark.django_db

TRANSPARENT = {
    "MODELS": {
        "testapp.Team": {"transparent": True},
        "testapp.Profile": {"transparent": True},
        "auth.User": {"transparent": True, "lookups": ["username"]},
        "testapp.Item": {"transparent": True},
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
    assert count_queries(lambda: Profile.objects.get(Q(pk=profile.pk)))[1] == 0
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
        lambda t, p: Team.objects.get(Q(pk=t) | Q(name="x")),
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
    for _ in range(2):  # a miss, then the cached absence: the ORM's message both times
        with pytest.raises(Team.DoesNotExist, match=r"^Team matching query does not exist\.$"):
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


@pytest.fixture
def objects_as_base_manager():
    """``Meta.base_manager_name = "objects"``: the cache's own database reads then go
    through the transparent manager."""
    meta = Team._meta
    meta.base_manager_name = "objects"
    meta.__dict__.pop("base_manager", None)
    yield
    meta.base_manager_name = None
    meta.__dict__.pop("base_manager", None)


def test_a_transparent_base_manager_reads_the_database_not_the_cache_again(
    objects_as_base_manager,
):
    team = TeamFactory(name="before")
    assert Team._base_manager is Team.objects
    with transaction.atomic():  # a row the transaction changed bypasses the cache
        team.name = "after"
        team.save()
        got, n = count_queries(lambda: Team.objects.get(pk=team.pk))
    assert (got.name, n) == ("after", 1)
    assert assert_cached(lambda: Team.objects.get(pk=team.pk)).name == "after"


def test_querysets_pickle_and_copy_and_stay_transparent():
    team = TeamFactory(name="kept")
    queryset = Team.objects.defer("name")
    assert type(queryset).__name__ == "QuerySet"  # the transparent subclass keeps the name
    for clone in (pickle.loads(pickle.dumps(queryset)), copy.copy(queryset)):
        assert [t.pk for t in clone] == [team.pk]
        assert type(clone) is type(queryset)
    Team.objects.get(pk=team.pk)
    restored = pickle.loads(pickle.dumps(Team.objects.all()))
    assert count_queries(lambda: restored.get(pk=team.pk))[1] == 0
    data = pickle.dumps(Team.objects.all())
    with override_settings(CACHESTRAT={}):  # unpickled where the model is not transparent
        assert type(pickle.loads(data)) is QuerySet


def test_as_manager_managers_deconstruct_to_the_original_queryset_class():
    manager = copy.copy(Team.objects)
    manager._built_with_as_manager = True  # what QuerySet.as_manager() sets
    assert manager.deconstruct()[2] == "django.db.models.query.QuerySet"


def test_model_instances_as_values_behave_like_the_orm():
    team = TeamFactory()
    profile = ProfileFactory(team=team)
    for value in (team, profile):  # not a relation: the ORM rejects an instance
        with pytest.raises(TypeError, match="expected a number"):
            Team.objects.get(pk=value)
    with override_settings(CACHESTRAT={"MODELS": {"testapp.Restaurant": {"transparent": True}}}):
        restaurant = Restaurant.objects.create(name="r")
        place = Place.objects.get(pk=restaurant.pk)
        # A one-to-one pk takes an instance of its target model, read by its target field.
        assert Restaurant.objects.get(pk=place) == restaurant
        assert count_queries(lambda: Restaurant.objects.get(place_ptr=place))[1] == 0
        with pytest.raises(ValueError, match="must be saved"):
            Restaurant.objects.get(pk=Place())


def test_forward_relations_are_served_by_the_cache():
    profile = ProfileFactory(team=TeamFactory(name="red"))
    first = Profile.objects.get(pk=profile.pk)
    assert count_queries(lambda: first.team.name) == ("red", 1)
    second = Profile.objects.get(pk=profile.pk)
    assert count_queries(lambda: second.team.name) == ("red", 0)


def test_a_forward_relation_routed_elsewhere_is_not_served():
    profile = ProfileFactory(team=TeamFactory(name="red"))
    Team.objects.get(pk=profile.team_id)  # cached, from the default database
    fresh = Profile.objects.get(pk=profile.pk)
    fresh._state.db = "elsewhere"  # a row read from another database routes its relations there
    with pytest.raises(Exception, match="elsewhere"):
        fresh.team  # noqa: B018 - the ORM must query that database, not the cache


@pytest.fixture
def case_insensitive_code(monkeypatch):
    """``Item.code`` under a non-deterministic ICU collation: "ABC" equals "abc"."""
    with connection.cursor() as cursor:
        # The pattern index Django adds for LIKE cannot use such a collation.
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'testapp_item'")
        like = [name for (name,) in cursor.fetchall() if name.endswith("_like")]
        for name in like:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            "CREATE COLLATION IF NOT EXISTS cs_case_insensitive "
            "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
        )
        cursor.execute(
            "ALTER TABLE testapp_item ALTER COLUMN code TYPE varchar(20) "
            "COLLATE cs_case_insensitive"
        )
    monkeypatch.setattr(Item._meta.get_field("code"), "db_collation", "cs_case_insensitive")
    app_wiring.reset()  # plans are built from the field as it now is
    yield
    with connection.cursor() as cursor:
        cursor.execute(
            'ALTER TABLE testapp_item ALTER COLUMN code TYPE varchar(20) COLLATE "default"'
        )
        for name in like:
            cursor.execute(f'CREATE INDEX "{name}" ON testapp_item (code varchar_pattern_ops)')
    monkeypatch.undo()
    app_wiring.reset()


def test_a_lookup_under_a_case_insensitive_collation_finds_what_the_orm_finds(
    case_insensitive_code,
):
    item = ItemFactory(code="abc")
    for _ in range(2):  # a miss, then whatever was cached
        assert Item.objects.get(code="ABC").pk == item.pk
        assert Item.cached.get(code="ABC").pk == item.pk
        assert Item.objects.get(code="abc").pk == item.pk


class HidesArchived(QuerySet):  # type: ignore[type-arg]
    """A queryset whose get() hides some rows, as soft-delete and tenancy querysets do."""

    def get(self, *args, **kwargs):
        found = super().get(*args, **kwargs)
        if found.name.startswith("archived"):
            raise self.model.DoesNotExist("archived")
        return found


@pytest.fixture
def archived_hidden_by_get():
    manager = Team._meta.default_manager
    transparent_mode.uninstall()
    own = vars(manager).get("_queryset_class")
    manager._queryset_class = HidesArchived
    transparent_mode.install()
    yield
    transparent_mode.uninstall()
    # Left as an attribute of the manager, the class would keep Team's manager from being
    # made transparent again in every later test (a manager's own class is left alone).
    if own is None:
        del manager._queryset_class
    else:
        manager._queryset_class = own
    transparent_mode.install()


def test_a_queryset_that_overrides_get_keeps_its_get(archived_hidden_by_get):
    team = TeamFactory(name="archived-1")
    for _ in range(2):
        with pytest.raises(Team.DoesNotExist):
            Team.objects.get(pk=team.pk)
    assert Team.cached.get(pk=team.pk).pk == team.pk  # the explicit API reads every row
