"""Consistency under concurrency: database reads per stampede (e) and stale reads (f).

Both cases drive the test suite's harnesses (``tests/stampede.py``, ``tests/race.py``) on
the benchmark's ``Article`` row, with ``views`` as the version every write increments, and
run our cache side by side with the hand-written cache-aside pattern.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from django.db import connections
from django.test import override_settings
from django_redis import get_redis_connection

from bench.benchapp.models import Article
from tests.race import Naive, Ours, Pauses, run
from tests.stampede import stampede

FIELD = "views"

#: The crowds of a stampede: (readers, forked processes?, label).
CROWDS = ((32, False, "32 threads"), (8, True, "8 processes"))


@dataclass(frozen=True)
class Contender:
    """One way of reading a hot row during a stampede."""

    key: str
    label: str
    read: Callable[[int], Any] | None  # None: ``Article.cached.get(pk=)``
    settings: Callable[[], AbstractContextManager[Any]]
    reset: Callable[[int], None]  # warm the row, then invalidate it (untimed)


def _reset_ours(pk: int) -> None:
    Article.cached.get(pk=pk)  # hot...
    Article.cached.invalidate(pk)  # ...and just invalidated


def _reset_naive(pk: int) -> None:
    get_redis_connection("default").delete(Naive.key(pk))


def contenders() -> list[Contender]:
    naive = Naive(Pauses(0, 0), Article, FIELD)
    return [
        Contender("ours", "django-cachestrat (leases on)", None, nullcontext, _reset_ours),
        Contender(
            "no_wait",
            "django-cachestrat, LEASE_WAIT=0 (every reader queries, as without leases)",
            None,
            lambda: override_settings(CACHESTRAT={"LEASE_WAIT": 0}),
            _reset_ours,
        ),
        Contender(
            "naive", "naive cache-aside: GET, query, SET", naive.read, nullcontext, _reset_naive
        ),
    ]


@dataclass(frozen=True)
class StampedeResult:
    contender: Contender
    crowd: str
    readers: int
    queries: list[int]


def stampedes(pk: int, repetitions: int, slow_ms: float) -> list[StampedeResult]:
    """Each contender and crowd ``repetitions`` times, interleaved in a rotating order."""
    everyone = contenders()
    counts: dict[tuple[str, str], list[int]] = {}
    for readers, processes, crowd in CROWDS:
        for rep in range(repetitions):
            shift = rep % len(everyone)
            for contender in everyone[shift:] + everyone[:shift]:
                with contender.settings():
                    contender.reset(pk)
                    n = stampede(
                        pk, readers, processes, slow_ms, model=Article, read=contender.read
                    )
                counts.setdefault((contender.key, crowd), []).append(n)
    return [
        StampedeResult(contender, crowd, readers, counts[contender.key, crowd])
        for readers, _, crowd in CROWDS
        for contender in everyone
    ]


@dataclass(frozen=True)
class RaceResult:
    name: str
    workers: str
    writes: int
    reads: int
    stale: int

    @property
    def fraction(self) -> float:
        return self.stale / self.reads if self.reads else 0.0


@contextmanager
def _fresh_row(pk: int) -> Iterator[None]:
    """Version 0 in the database, nothing under the naive key; our entry is invalidated."""
    Article.objects.filter(pk=pk).update(**{FIELD: 0})
    _reset_naive(pk)
    try:
        yield
    finally:
        connections.close_all()


def races(
    pks: list[int], writes: int, readers: int, probability: float, max_ms: float
) -> list[RaceResult]:
    """One writer and ``readers`` readers per run, each run on its own row."""
    results = []
    rows = iter(pks)
    for processes, workers in (
        (False, f"{readers} reader threads + 1 writer"),
        (True, f"{readers} reader processes + 1 writer"),
    ):
        for impl_type in (Naive, Ours):
            pk = next(rows)
            impl = impl_type(Pauses(probability, max_ms), Article, FIELD)
            with _fresh_row(pk):
                tally = run(impl, pk, writes=writes, readers=readers, processes=processes)
            results.append(
                RaceResult(
                    impl.name, workers, tally.writes.value, tally.reads.value, tally.stale.value
                )
            )
    return results


def median(values: list[int]) -> float:
    return float(statistics.median(values))
