"""Transaction awareness: what an open transaction changed, and what to do when it commits."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["ALL_ROWS", "TxState", "can_fill", "is_model_touched", "is_touched", "state_for"]

#: Marks a model whose changed rows are not known one by one (a bulk update).
ALL_ROWS: frozenset[Any] = frozenset({object()})


class TxState:
    """What one outermost transaction changed, tied to a marker in its on-commit hooks.

    Django drops the on-commit hooks of a rolled-back block, so the marker is still queued
    exactly while the writes it stands for may commit; when it runs, the transaction has
    committed and :data:`commit_hook` sends the deferred invalidations.
    """

    __slots__ = ("changed", "flushed", "generations", "inserted", "keys", "marker", "touched")

    def __init__(self) -> None:
        self.touched: dict[str, set[Any] | frozenset[Any]] = {}
        self.inserted: set[str] = set()
        self.keys: set[str] = set()
        self.generations: set[str] = set()
        self.changed: dict[Any, set[Any]] = {}  # plan -> pks, for after-commit work
        self.flushed: set[Any] = set()  # plans whose generation the commit bumps

        def marker() -> None:
            _forget(self)
            commit_hook(self)

        self.marker = marker

    def touch(self, label: str, pks: Iterable[Any] | None) -> None:
        if pks is None:
            self.touched[label] = ALL_ROWS
            return
        rows = self.touched.get(label)
        if rows is None:
            rows = self.touched[label] = set()
        if rows is not ALL_ROWS:
            assert isinstance(rows, set)
            rows.update(pks)


def _noop(state: TxState) -> None:
    pass


#: Called with the state when its transaction commits (set by the invalidation module).
commit_hook: Callable[[TxState], None] = _noop


class _Local(threading.local):
    def __init__(self) -> None:
        self.states: dict[str, TxState] = {}


_local = _Local()


def _forget(state: TxState) -> None:
    for alias, current in list(_local.states.items()):
        if current is state:
            del _local.states[alias]


def _is_live(conn: BaseDatabaseWrapper, state: TxState) -> bool:
    if not conn.in_atomic_block:
        return False
    return any(entry[1] is state.marker for entry in conn.run_on_commit)


def state_for(using: str) -> TxState | None:
    """The open transaction's state on this connection (created on demand), or None."""
    conn = connections[using]
    if not conn.in_atomic_block:
        return None
    state = _local.states.get(using)
    if state is None or not _is_live(conn, state):
        state = _local.states[using] = TxState()
        conn.on_commit(state.marker, robust=True)
    return state


def _live_states() -> Iterable[TxState]:
    states = _local.states
    for alias, state in list(states.items()):
        if _is_live(connections[alias], state):
            yield state
        else:
            states.pop(alias, None)


def is_touched(label: str, pk: Any) -> bool:
    """Whether the calling thread's open transaction changed this row."""
    if not _local.states:  # the common case: no write transaction open in this thread
        return False
    for state in _live_states():
        rows = state.touched.get(label)
        if rows is not None and (rows is ALL_ROWS or pk in rows):
            return True
    return False


def is_model_touched(label: str) -> bool:
    """Whether the calling thread's open transaction changed any row of this model."""
    if not _local.states:
        return False
    return any(label in state.touched for state in _live_states())


def has_inserted(label: str) -> bool:
    """Whether the open transaction inserted rows of this model that it cannot name."""
    if not _local.states:
        return False
    return any(label in state.inserted for state in _live_states())


def can_fill(using: str, label: str) -> bool:
    """Whether a row read on this connection may be stored in the shared cache.

    Outside a transaction, always. Inside one, only where every statement sees the latest
    committed data (PostgreSQL at READ COMMITTED): an older snapshot could hold a row that
    a committed writer has already invalidated, and the lease taken after that
    invalidation would not catch it. Never for a model the transaction inserted into
    without naming the rows: the read could see them before they commit.
    """
    conn = connections[using]
    if not conn.in_atomic_block:
        return True
    if has_inserted(label) or conn.vendor != "postgresql":
        return False
    level = getattr(conn, "isolation_level", None)
    return level is None or "READ_COMMITTED" in str(getattr(level, "name", level)).upper()
