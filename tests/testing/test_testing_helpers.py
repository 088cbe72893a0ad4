"""django_cachestrat.testing, as docs/testing.md shows it: every block between the
``# docs:`` markers appears there word for word (tests/app/test_docs.py checks it)."""

from __future__ import annotations

import pytest
from django.db import transaction

# docs: pytest
from django.test import TestCase

from django_cachestrat.testing import (
    assert_served_from_cache,
    cache_disabled,
    count_reads,
    flush_cache,
)
from tests.testapp.models import Profile


@pytest.mark.django_db
def test_profile_page_is_served_from_the_cache():
    profile = Profile.objects.create(username="jane")
    Profile.cached.get(pk=profile.pk)  # a miss: read from the database, then cached
    with assert_served_from_cache(Profile):
        Profile.cached.get(pk=profile.pk)  # a hit: no SQL at all


@pytest.mark.django_db
def test_counting_reads():
    profiles = [Profile.objects.create(username=f"user{i}") for i in range(3)]
    with count_reads() as reads:
        Profile.cached.get_many([p.pk for p in profiles])
        Profile.cached.get_many([p.pk for p in profiles])
    assert (reads.misses(Profile), reads.hits(Profile)) == (3, 3)
    assert reads.queries_saved(Profile) == 1  # the second call needed no query
    assert reads.queries == 1


@pytest.mark.django_db
def test_the_fixture(cachestrat):
    profile = Profile.objects.create(username="jane")
    with cachestrat.count_reads() as reads:
        Profile.cached.get(pk=profile.pk)
        cachestrat.flush()  # every cached model, O(1) each
        Profile.cached.get(pk=profile.pk)
    assert reads.misses(Profile) == 2
    with cachestrat.disabled(), cachestrat.count_reads() as reads:
        Profile.cached.get(pk=profile.pk)  # from the database, as if Redis were down
    assert (reads.hits(), reads.queries) == (0, 1)


class ProfileTests(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.profile = Profile.objects.create(username="jane", age=30)

    def test_a_write_in_the_test_is_seen_at_once(self):
        Profile.cached.get(pk=self.profile.pk)
        Profile.objects.filter(pk=self.profile.pk).update(age=31)
        assert Profile.cached.get(pk=self.profile.pk).age == 31

    def test_the_cache_off(self):
        with cache_disabled(), count_reads() as reads:
            Profile.cached.get(pk=self.profile.pk)
        assert reads.hits() == 0

    def test_flush_cache(self):
        Profile.cached.get(pk=self.profile.pk)
        flush_cache(Profile)
        with count_reads() as reads:
            Profile.cached.get(pk=self.profile.pk)
        assert reads.misses(Profile) == 1


# docs: end


@pytest.mark.django_db
def test_assert_served_from_cache_names_what_missed():
    profile = Profile.objects.create(username="jane")
    missed = r"'testapp\.profile': 1.*1 SQL statement"
    with pytest.raises(AssertionError, match=missed), assert_served_from_cache(Profile):
        Profile.cached.get(pk=profile.pk)
    nothing = r"no testapp\.profile row served"
    with pytest.raises(AssertionError, match=nothing), assert_served_from_cache(Profile):
        pass


@pytest.mark.django_db
def test_cache_disabled_still_invalidates_afterwards():
    profile = Profile.objects.create(username="jane", age=1)
    Profile.cached.get(pk=profile.pk)
    with cache_disabled(), transaction.atomic():
        Profile.objects.filter(pk=profile.pk).update(age=2)
    assert Profile.cached.get(pk=profile.pk).age == 2
