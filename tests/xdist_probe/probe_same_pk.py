"""Run by tests/testing/test_xdist.py under pytest-xdist: each worker has a database of its own,
where the same pk names another row; each must be served its own row from the cache."""

from __future__ import annotations

import os
import time

import pytest

from tests.testapp.models import Profile

PK = 90_210


@pytest.mark.django_db(transaction=True)  # committed rows: what two workers could share
@pytest.mark.parametrize("run", range(4))
def test_each_worker_reads_its_own_row(run: int) -> None:
    worker = os.environ["PYTEST_XDIST_WORKER"]
    Profile.objects.create(pk=PK, username=f"{worker}-{run}")
    for _ in range(5):
        assert Profile.cached.get(pk=PK).username == f"{worker}-{run}"
        time.sleep(0.02)  # let the other worker fill the same pk meanwhile
