"""Write-through: after commit the cache holds the committed row, never an older one."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.db.models import F
from django.test import override_settings

from django_cachestrat.plan import plan_for
from django_cachestrat.reads import Generations, decode_row
from django_cachestrat.transactions import scope_tag
from tests.factories import ProfileFactory
from tests.helpers import count_queries
from tests.race import Ours, Pauses, run
from tests.testapp.models import Profile

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.usefixtures("write_through"),
]


@pytest.fixture
def write_through():
    options = {"lookups": ["username"], "strategy": "write_through"}
    with override_settings(CACHESTRAT={"MODELS": {"testapp.Profile": options}}):
        yield


def cached_row(redis_client, pk):
    """The row as stored in Redis right now (no fill, no database)."""
    plan = plan_for(Profile)
    data = redis_client.get(plan.keys.row(pk))
    generation = redis_client.get(plan.keys.generation)
    generations = Generations(plan.keys, generation, scope_tag("default"))
    return None if data is None else decode_row(plan, data, generations, "default")


def test_the_committed_row_is_cached_after_save(redis_client):
    profile = ProfileFactory(age=1)
    profile.age = 2
    profile.save()
    assert cached_row(redis_client, profile.pk).age == 2
    got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
    assert (got.age, n) == (2, 0)


def test_the_database_value_is_cached_not_the_instance(redis_client):
    profile = ProfileFactory(age=1)
    Profile.objects.filter(pk=profile.pk).update(age=F("age") + 10)
    assert cached_row(redis_client, profile.pk).age == 11


def test_only_committed_rows_are_cached_and_a_rollback_changes_nothing(redis_client):
    profile = ProfileFactory(age=1)
    with transaction.atomic():
        profile.age = 2
        profile.save()
        assert cached_row(redis_client, profile.pk).age == 1  # still the committed row
        assert Profile.cached.get(pk=profile.pk).age == 2  # the transaction's own view
    assert cached_row(redis_client, profile.pk).age == 2
    with pytest.raises(RuntimeError), transaction.atomic():
        profile.age = 3
        profile.save()
        raise RuntimeError
    assert cached_row(redis_client, profile.pk).age == 2


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
@pytest.mark.django_db(transaction=True)  # other connections see committed rows only
def test_concurrent_writers_never_leave_an_older_version(redis_client, processes):
    profile = ProfileFactory(age=0)
    tally = run(Ours(Pauses(0.5, 3)), profile.pk, writes=200, readers=2, processes=processes)
    assert tally.stale.value == 0
    assert cached_row(redis_client, profile.pk).age == 200 == Profile.objects.get(pk=profile.pk).age
