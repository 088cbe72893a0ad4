"""Domain helpers for assertions about the cache."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connection, connections
from django.test.utils import CaptureQueriesContext


def count_queries(func: Callable[[], Any], using: str | None = None) -> tuple[Any, int]:
    """``func()`` and how many queries it ran on the database ``using`` (default: default)."""
    with CaptureQueriesContext(connections[using] if using else connection) as ctx:
        result = func()
    return result, len(ctx.captured_queries)


def assert_cached(func: Callable[[], Any]) -> Any:
    """The first call reads the database once; the second is served with no query."""
    first, n_first = count_queries(func)
    assert n_first == 1, f"first call ran {n_first} queries, expected 1"
    second, n_second = count_queries(func)
    assert n_second == 0, f"second call ran {n_second} queries, expected 0"
    assert first == second
    return second


def queries_raising(exc: type[BaseException], func: Callable[[], Any]) -> int:
    """Run ``func``, which must raise ``exc``; return how many queries it ran."""
    with CaptureQueriesContext(connection) as ctx:
        try:
            func()
        except exc:
            return len(ctx.captured_queries)
    raise AssertionError(f"{exc.__name__} not raised")
