"""Several databases: keys name the database whose rows they hold (a replica's: its primary)."""

from __future__ import annotations

import pytest
from django.test import override_settings

from django_cachestrat.inspection import inspect_row
from django_cachestrat.plan import plan_for
from tests import routers
from tests.helpers import count_queries
from tests.testapp.models import Item, Team

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other", "replica"])

REPLICAS = {"MODELS": {"auth.User": {"lookups": ["username"]}}, "REPLICAS": {"replica": "default"}}
TRANSPARENT = {"MODELS": {"testapp.Team": {"transparent": True}}}


def test_the_default_database_keeps_its_keys_and_others_are_named():
    plan = plan_for(Team)
    assert plan.space("default").row(1) == "cs:testapp.team:{1}"
    assert plan.space("other").row(1) == "cs:testapp.team@other:{1}"
    assert plan.space("other").generation == "cs:testapp.team@other:gen"
    assert plan.space("replica") is not plan.space("default")  # not declared a replica
    with override_settings(CACHESTRAT=REPLICAS):
        plan = plan_for(Team)
        assert plan.space("replica") is plan.space("default")


def test_the_same_pk_in_two_databases_is_two_rows():
    Team.objects.using("default").create(pk=7, name="acme")
    Team.objects.using("other").create(pk=7, name="globex")
    with routers.using("default"):
        assert Team.cached.get(pk=7).name == "acme"
    with routers.using("other"):
        assert Team.cached.get(pk=7).name == "globex"
        assert count_queries(lambda: Team.cached.get(pk=7), using="other")[1] == 0
    with routers.using("default"):
        assert Team.cached.get(pk=7).name == "acme"


def test_each_tenant_is_served_its_own_rows_and_its_writes_invalidate_only_them():
    Item.objects.using("default").create(code="a-1")
    Item.objects.using("other").create(code="a-1")
    for tenant in ("default", "other"):
        with routers.using(tenant):
            team = Team.objects.create(name=f"team of {tenant}")
            assert Team.cached.get(pk=team.pk).name == f"team of {tenant}"
            assert Item.cached.get(code="a-1")._state.db == tenant
    with routers.using("other"):
        team = Team.objects.get(name="team of other")
        team.name = "renamed"
        team.save()
        assert Team.cached.get(pk=team.pk).name == "renamed"
    with routers.using("default"):
        # Same pk or not, the default database's rows are untouched and still cached.
        mine = Team.objects.get(name="team of default")
        assert count_queries(lambda: Team.cached.get(pk=mine.pk))[1] == 0
        assert Team.cached.get(pk=mine.pk).name == "team of default"


def test_a_write_on_the_primary_invalidates_what_was_read_through_its_replica():
    team = Team.objects.create(name="before")
    with override_settings(CACHESTRAT=REPLICAS), routers.using("replica", "default"):
        found = Team.cached.get(pk=team.pk)
        assert (found.name, found._state.db) == ("before", "replica")
        assert count_queries(lambda: Team.cached.get(pk=team.pk), using="replica")[1] == 0
        Team.objects.filter(pk=team.pk).update(name="after")
        assert Team.cached.get(pk=team.pk).name == "after"


def test_transparent_reads_serve_any_database_from_its_own_keys():
    Team.objects.using("default").create(pk=3, name="acme")
    Team.objects.using("other").create(pk=3, name="globex")
    with override_settings(CACHESTRAT=TRANSPARENT):
        assert Team.objects.get(pk=3).name == "acme"
        assert Team.objects.using("other").get(pk=3).name == "globex"
        served = count_queries(lambda: Team.objects.using("other").get(pk=3), using="other")
        assert (served[0].name, served[1]) == ("globex", 0)
        Team.objects.using("other").filter(pk=3).update(name="initech")
        assert Team.objects.using("other").get(pk=3).name == "initech"
        assert Team.objects.get(pk=3).name == "acme"


def test_the_inspection_page_shows_the_keys_of_the_database_read():
    Team.objects.using("other").create(pk=5, name="globex")
    with routers.using("other"):
        Team.cached.get(pk=5)
        report = inspect_row(Team, 5)
    assert (report.key, report.state, report.in_database) == (
        "cs:testapp.team@other:{5}",
        "row",
        True,
    )
    assert inspect_row(Team, 5).state == "missing"  # the default database: nothing cached


def test_write_through_refills_from_the_database_written():
    write_through = {"MODELS": {"testapp.Team": {"strategy": "write_through"}}}
    Team.objects.using("default").create(pk=9, name="acme")
    team = Team.objects.using("other").create(pk=9, name="globex")
    with override_settings(CACHESTRAT=write_through):
        team.name = "initech"
        team.save()  # on "other", where the instance came from
        with routers.using("other"):
            assert count_queries(lambda: Team.cached.get(pk=9), using="other") == (team, 0)
            assert Team.cached.get(pk=9).name == "initech"
        assert Team.cached.get(pk=9).name == "acme"


def test_a_flush_drops_the_model_in_every_database_or_in_the_one_named():
    for alias in ("default", "other"):
        Team.objects.using(alias).create(pk=4, name=alias)
        with routers.using(alias):
            Team.cached.get(pk=4)
    Team.cached.flush(using="other")
    with routers.using("other"):
        assert count_queries(lambda: Team.cached.get(pk=4), using="other")[1] == 1
    assert count_queries(lambda: Team.cached.get(pk=4))[1] == 0
    Team.cached.flush()
    for alias in ("default", "other"):
        with routers.using(alias):
            assert count_queries(lambda: Team.cached.get(pk=4), using=alias)[1] == 1


def test_counters_are_kept_and_flushed_per_database():
    from django_cachestrat.drain import drain_model
    from tests.testapp.models import Profile

    for alias in ("default", "other"):
        Profile.objects.using(alias).create(pk=6, username=alias, likes=10)
    with routers.using("other"):
        Profile.cached.incr(6, "likes", by=5)
        assert Profile.cached.get(pk=6).likes == 15  # pending increments are read
    assert Profile.cached.get(pk=6).likes == 10  # the default database's row has none
    drain_model(Profile)
    assert Profile.objects.using("other").get(pk=6).likes == 15
    assert Profile.objects.using("default").get(pk=6).likes == 10


def test_cached_using_names_the_database_without_a_router():
    from tests.testapp.models import Profile

    Team.objects.using("default").create(pk=8, name="acme")
    Team.objects.using("other").create(pk=8, name="globex")
    other = Team.cached.using("other")
    assert other.get(pk=8).name == "globex"
    assert other.get_many([8])[8].name == "globex"
    assert count_queries(lambda: other.get(pk=8), using="other")[1] == 0
    assert Team.cached.get(pk=8).name == "acme"
    Team.objects.using("other").filter(pk=8).update(name="initech")
    assert other.get(pk=8).name == "initech"
    Profile.objects.using("other").create(pk=8, username="p", likes=1)
    Profile.cached.using("other").incr(8, "likes")
    assert Profile.cached.using("other").get(username="p").likes == 2
    with pytest.raises(ValueError, match=r"Team.cached.using\('nope'\): not a database alias"):
        Team.cached.using("nope")
