"""One database query per stampede (DESIGN invariant 3), counted at the database."""

from __future__ import annotations

import pytest
from django.test import override_settings

from tests.factories import ProfileFactory
from tests.stampede import stampede
from tests.testapp.models import Profile

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("readers", "processes"), [(32, False), (8, True)], ids=["32-threads", "8-processes"]
)
def test_a_hot_row_invalidated_costs_one_query(readers, processes):
    profile = ProfileFactory()
    Profile.cached.get(pk=profile.pk)
    profile.save()  # invalidates the hot row
    with override_settings(CACHESTRAT={"LEASE_WAIT": 30}):  # the filler is never too slow
        assert stampede(profile.pk, readers, processes) == 1


@pytest.mark.parametrize(
    ("readers", "processes"), [(32, False), (8, True)], ids=["32-threads", "8-processes"]
)
def test_without_waiting_on_leases_every_reader_queries(readers, processes):
    profile = ProfileFactory()
    with override_settings(CACHESTRAT={"LEASE_WAIT": 0}):
        assert stampede(profile.pk, readers, processes, every_reader_queries=True) == readers
