"""Proof of no stale reads and one query per stampede, with real threads and processes."""

from __future__ import annotations

import pytest

from tests.factories import ProfileFactory
from tests.race import Naive, Ours, Pauses, run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_no_stale_read_under_random_interleavings(processes):
    profile = ProfileFactory(age=0)
    total = {"writes": 0, "reads": 0, "stale": 0}
    for probability in (0.0, 0.5):  # without pauses, then with pauses at every step
        impl = Ours(Pauses(probability, max_ms=3))
        tally = run(impl, profile.pk, writes=300, readers=3, processes=processes)
        total["writes"] += tally.writes.value
        total["reads"] += tally.reads.value
        total["stale"] += tally.stale.value
    assert total["writes"] == 600 and total["reads"] > 600
    assert total["stale"] == 0, total


def test_the_harness_catches_the_naive_pattern():
    profile = ProfileFactory(age=0)
    tally = run(Naive(Pauses(0.5, max_ms=3)), profile.pk, writes=300, readers=3, processes=False)
    assert tally.stale.value > 0, "the harness found no stale read in the naive cache"
