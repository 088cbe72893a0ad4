"""Helpers for a project's own tests: what the cache served, flushing it, switching it off.

The cache works inside ``django.test.TestCase`` and pytest-django's ``django_db`` as in
production, and nothing a test cached is seen by the next one; these helpers only let a
test say what it expects of the cache. Installed as a pytest plugin, this module also
provides the ``cachestrat`` fixture.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from django.db import connections, models

__all__ = [
    "CacheReads",
    "assert_served_from_cache",
    "cache_disabled",
    "count_reads",
    "flush_cache",
]

_FIELDS = ("hits", "misses", "fills", "queries_saved")


def _label(model: type[models.Model] | str) -> str:
    if isinstance(model, str):
        return model.lower()
    concrete = model._meta.concrete_model or model
    return concrete._meta.label_lower


@dataclasses.dataclass
class CacheReads:
    """What the cache did in this process inside a :func:`count_reads` block.

    ``hits``: rows served from Redis; ``misses``: rows read from the database;
    ``fills``: rows stored; ``queries_saved``: reads (a ``get`` or a ``get_many``)
    answered with no database query; ``queries``: SQL statements run on any database.
    """

    counts: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)
    queries: int = 0

    def _total(self, name: str, model: type[models.Model] | str | None) -> int:
        if model is not None:
            return self.counts.get(_label(model), {}).get(name, 0)
        return sum(counts.get(name, 0) for counts in self.counts.values())

    def hits(self, model: type[models.Model] | str | None = None) -> int:
        return self._total("hits", model)

    def misses(self, model: type[models.Model] | str | None = None) -> int:
        return self._total("misses", model)

    def fills(self, model: type[models.Model] | str | None = None) -> int:
        return self._total("fills", model)

    def queries_saved(self, model: type[models.Model] | str | None = None) -> int:
        return self._total("queries_saved", model)


def _snapshot() -> dict[str, dict[str, int]]:
    from .stats import _stats

    return {label: {n: getattr(s, n) for n in _FIELDS} for label, s in list(_stats.items())}


class _QueryCounter:
    """Counts the SQL statements run on every database while it is installed."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@contextlib.contextmanager
def count_reads() -> Iterator[CacheReads]:
    """``with count_reads() as reads: ...`` then ``reads.hits(Profile)``, ``reads.misses()``.

    Counts this process's reads (threads included), not other processes'.
    """
    reads = CacheReads()
    before = _snapshot()
    counter = _QueryCounter()
    with contextlib.ExitStack() as stack:
        for conn in connections.all():
            stack.enter_context(conn.execute_wrapper(counter))
        try:
            yield reads
        finally:
            for label, after in _snapshot().items():
                old = before.get(label, {})
                delta = {n: after[n] - old.get(n, 0) for n in _FIELDS}
                if any(delta.values()):
                    reads.counts[label] = delta
            reads.queries = counter.count


@contextlib.contextmanager
def assert_served_from_cache(*models: type[models.Model]) -> Iterator[CacheReads]:
    """Fail unless every cached read in the block was a hit and no SQL ran at all.

    With ``models``, each of them must also have been read from the cache at least once.
    """
    with count_reads() as reads:
        yield reads
    problems = []
    if reads.misses():
        missed = {label: c["misses"] for label, c in reads.counts.items() if c["misses"]}
        problems.append(f"rows read from the database: {missed}")
    if reads.queries:
        problems.append(f"{reads.queries} SQL statement(s) ran")
    problems += [f"no {_label(m)} row served from the cache" for m in models if not reads.hits(m)]
    if problems:
        raise AssertionError("not served from the cache: " + "; ".join(problems))


def flush_cache(*models: type[models.Model]) -> None:
    """Drop every cached row of these models (default: every cached model), O(1) each.

    Pending write-behind increments are data, not cache: they stay.
    """
    from .invalidation import flush
    from .options import cached_models

    for model in models or cached_models():
        flush(model)


@contextlib.contextmanager
def cache_disabled() -> Iterator[None]:
    """Run the block as if Redis were down: reads come from the database, nothing is
    filled, increments go to the database, and invalidations are replayed after it."""
    from .breaker import breaker

    saved = breaker.open_until
    breaker.open_until = float("inf")
    try:
        yield
    finally:
        breaker.open_until = saved


try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed to use the fixture
    pass
else:

    class CacheFixture:
        """The ``cachestrat`` fixture: the helpers of this module, at hand."""

        count_reads = staticmethod(count_reads)
        assert_served_from_cache = staticmethod(assert_served_from_cache)
        disabled = staticmethod(cache_disabled)
        flush = staticmethod(flush_cache)

    @pytest.fixture
    def cachestrat() -> CacheFixture:
        """Count, assert, flush and switch off the row cache in a test."""
        return CacheFixture()
