"""Query counts and latencies of reads, measured the same way for the cache and the database."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from time import perf_counter
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings


@dataclass(frozen=True)
class Measured:
    """What a call returned, how many SQL queries it ran, and how long it took."""

    value: Any
    queries: int
    seconds: float


def once(call: Callable[[], Any]) -> Measured:
    """Run ``call`` once, counting its queries and timing it."""
    with CaptureQueriesContext(connection) as captured:
        start = perf_counter()
        value = call()
        seconds = perf_counter() - start
    return Measured(value, len(captured), seconds)


def side_by_side(calls: Sequence[Callable[[], Any]], times: int) -> list[Measured]:
    """Per call: the queries of ``times`` runs in total, and the median latency of one run.

    Queries are counted in a first pass. The runs are then timed with query logging off (as
    in production), interleaved so that noise from the rest of the machine hits all alike.
    """
    counts = []
    for call in calls:
        with CaptureQueriesContext(connection) as captured:
            for _ in range(times):
                call()
        counts.append(len(captured))
    timings: list[list[float]] = [[] for _ in calls]
    values: list[Any] = [None] * len(calls)
    with override_settings(DEBUG=False):
        for _ in range(times):
            for i, call in enumerate(calls):
                start = perf_counter()
                values[i] = call()
                timings[i].append(perf_counter() - start)
    return [
        Measured(value, count, statistics.median(seconds))
        for value, count, seconds in zip(values, counts, timings, strict=True)
    ]


def interleaved(calls: Sequence[Callable[[], Any]], times: int) -> list[Measured]:
    """Like :func:`side_by_side`, for calls that change something: each runs ``times`` times.

    Queries are counted during the timed runs by an execute wrapper, which costs next to
    nothing (query logging stays off, as in production).
    """
    counters = [_QueryCounter() for _ in calls]
    timings: list[list[float]] = [[] for _ in calls]
    values: list[Any] = [None] * len(calls)
    with override_settings(DEBUG=False):
        for _ in range(times):
            for i, call in enumerate(calls):
                with connection.execute_wrapper(counters[i]):
                    start = perf_counter()
                    values[i] = call()
                    timings[i].append(perf_counter() - start)
    return [
        Measured(value, counter.queries, statistics.median(seconds))
        for value, counter, seconds in zip(values, counters, timings, strict=True)
    ]


class _QueryCounter:
    """An execute wrapper that counts the statements run through it."""

    def __init__(self) -> None:
        self.queries = 0

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        self.queries += 1
        return execute(sql, params, many, context)
