"""Fixtures shared by the suite: a clean Redis database and fresh statistics per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django_redis import get_redis_connection

from django_cachestrat import stats
from django_cachestrat.breaker import breaker
from django_cachestrat.pending import pending
from tests import celery_app  # noqa: F401 - the default Celery app: flushes go to its broker


@pytest.fixture(autouse=True)
def clean_redis(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("keep_redis"):  # what one test leaves, the next sees
        yield
        return
    client = get_redis_connection("default")
    client.flushdb()
    breaker.reset()
    pending.clear()
    stats.reset()  # each test's figures are its own
    yield
    client.flushdb()


@pytest.fixture
def redis_client() -> Any:
    return get_redis_connection("default")
