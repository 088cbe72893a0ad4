"""Rolling deploys: releases with different schemas share a row's key, so a write made by
either one invalidates what the other one reads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from django_cachestrat import invalidation
from django_cachestrat import plan as plans
from django_cachestrat.plan import ModelPlan
from tests.factories import ProfileFactory
from tests.helpers import count_queries
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


def release_without(*names: str) -> ModelPlan:
    """The plan of a release built before ``names`` were added to ``Profile``."""
    meta = Profile._meta
    fields = meta.concrete_fields
    meta.__dict__["concrete_fields"] = tuple(f for f in fields if f.name not in names)
    try:
        return ModelPlan(Profile)
    finally:
        meta.__dict__["concrete_fields"] = fields


@contextlib.contextmanager
def running(plan: ModelPlan) -> Iterator[None]:
    """Reads and writes of this process use ``plan``, as the release that built it does."""
    plans._plans[Profile] = plan
    invalidation.reset()
    try:
        yield
    finally:
        plans._plans.pop(Profile, None)
        invalidation.reset()


def test_the_two_releases_really_differ() -> None:
    old, new = release_without("bio"), ModelPlan(Profile)
    assert "bio" not in old.codec.attnames and "bio" in new.codec.attnames


def test_a_write_by_either_release_invalidates_the_row_the_other_one_reads() -> None:
    old, new = release_without("bio"), ModelPlan(Profile)
    profile = ProfileFactory(age=1)
    for plan in (old, new):  # both releases have the row cached
        with running(plan):
            assert Profile.cached.get(pk=profile.pk).age == 1
    with running(new):
        Profile.objects.filter(pk=profile.pk).update(age=2)
    with running(old):
        assert Profile.cached.get(pk=profile.pk).age == 2
        Profile.objects.filter(pk=profile.pk).update(age=3)
    with running(new):
        assert Profile.cached.get(pk=profile.pk).age == 3


def test_a_row_of_the_other_release_is_a_miss_and_is_replaced(redis_client) -> None:
    old, new = release_without("bio"), ModelPlan(Profile)
    profile = ProfileFactory(bio="kept")
    with running(old):
        Profile.cached.get(pk=profile.pk)
    with running(new):
        got, n = count_queries(lambda: Profile.cached.get(pk=profile.pk))
        assert (got.bio, n) == ("kept", 1)
        assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 0
    with running(old):  # and back: each release reads its own schema only
        assert count_queries(lambda: Profile.cached.get(pk=profile.pk))[1] == 1
