"""What the cache did for one request, recorded only while a debug panel asks for it.

Off by default: the read paths then pay one ``ContextVar.get`` (``active()``) and nothing
else. ``recording()`` installs a fresh :class:`RequestLog` in the current context only, so
concurrent requests (threads or asyncio tasks) each see their own, and code run through
``sync_to_async``/``async_to_sync`` shares the caller's, since those copy the context.
Nothing here is global: no setting is changed and no other request can see a log.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["FIGURES", "RequestLog", "active", "recording"]

#: The figures counted per model, in the order the panel shows them.
FIGURES = (
    "hits",
    "misses",
    "queries_saved",
    "lookup_hits",
    "lookup_misses",
    "lease_waits",
    "lost_fills",
    "invalidations_queued",
    "invalidations_sent",
    "flushes",
    "increments",
    "increment_total",
)


class RequestLog:
    """Per-model counts of one request: plain ints in plain dicts, so JSON-safe as is."""

    __slots__ = ("models",)

    def __init__(self) -> None:
        self.models: dict[str, dict[str, int]] = {}

    def _add(self, label: str, name: str, by: int) -> None:
        counts = self.models.get(label)
        if counts is None:
            counts = self.models[label] = dict.fromkeys(FIGURES, 0)
        counts[name] += by

    def reads(
        self, label: str, hits: Sequence[Any], misses: Sequence[Any], saved: bool | None = None
    ) -> None:
        """A read by pk: rows served from Redis and rows that missed. A read that hit every
        row saved the query it would have run (``saved``: whether it did, when the caller
        counts the rest of the read elsewhere, as an async read's sync part does)."""
        self._add(label, "hits", len(hits))
        self._add(label, "misses", len(misses))
        if saved is None:
            saved = bool(hits) and not misses
        self._add(label, "queries_saved", int(saved))

    def lookup(self, label: str, pk: Any, missing: Any) -> None:
        """A lookup's pointer as read from Redis: None for a miss (a query follows), the
        ``missing`` marker for a cached "no such row" (a query saved), else a pk (the row
        read that follows counts itself)."""
        self._add(label, "lookup_misses" if pk is None else "lookup_hits", 1)
        self._add(label, "queries_saved", int(pk is missing))

    def lookup_filled(self, label: str, found: bool) -> None:
        """A missed pointer was read from the database: when it named a row, that row's
        own read is a second query or a hit that saved nothing, so one saving is taken back."""
        self._add(label, "queries_saved", -int(found))

    def lease_waits(self, label: str, keys: int) -> None:
        self._add(label, "lease_waits", keys)

    def lost_fills(self, label: str, count: int) -> None:
        self._add(label, "lost_fills", count)

    def queued(self, labels: Sequence[str], pks: Sequence[Any] | None) -> None:
        """Invalidations held until the transaction commits (rows unknown: one flush)."""
        for label in labels:
            self._add(label, "invalidations_queued", len(pks) if pks is not None else 1)

    def sent(self, label: str, rows: int, flushed: bool = False) -> None:
        """Invalidations made once the write committed (or at once, in autocommit)."""
        self._add(label, "flushes" if flushed else "invalidations_sent", rows)

    def increment(self, label: str, by: int) -> None:
        self._add(label, "increments", 1)
        self._add(label, "increment_total", by)

    def as_dict(self) -> dict[str, Any]:
        """``{"models": {label: {figure: n}}, "totals": {figure: n}}``, sorted by label."""
        totals = dict.fromkeys(FIGURES, 0)
        for counts in self.models.values():
            for name, value in counts.items():
                totals[name] += value
        models = {label: dict(self.models[label]) for label in sorted(self.models)}
        return {"models": models, "totals": totals}


_current: contextvars.ContextVar[RequestLog | None] = contextvars.ContextVar(
    "django_cachestrat_requestlog", default=None
)

#: The log recording in this context, or None: the one check the hit path pays.
active = _current.get


@contextlib.contextmanager
def recording(log: RequestLog | None = None) -> Iterator[RequestLog]:
    """Record into ``log`` (a new one by default) for the code run inside the block."""
    log = RequestLog() if log is None else log
    token = _current.set(log)
    try:
        yield log
    finally:
        _current.reset(token)
