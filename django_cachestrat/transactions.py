"""Transaction awareness: rows a transaction changed bypass the shared cache until commit."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["ALL_ROWS", "can_fill", "is_touched", "record_write"]

#: Marks a model whose changed rows are not known one by one (a bulk update).
ALL_ROWS: frozenset[Any] = frozenset({object()})


class _TxState:
    """Rows one outermost transaction changed, tied to a marker in its on-commit hooks."""

    __slots__ = ("marker", "touched")

    def __init__(self) -> None:
        self.touched: dict[str, set[Any] | frozenset[Any]] = {}

        def marker() -> None:  # runs at commit; its absence means a rollback happened
            _forget_state(self)

        self.marker = marker


class _Local(threading.local):
    def __init__(self) -> None:
        self.states: dict[str, _TxState] = {}


_local = _Local()


def _forget_state(state: _TxState) -> None:
    for alias, current in list(_local.states.items()):
        if current is state:
            del _local.states[alias]


def _is_live(conn: BaseDatabaseWrapper, state: _TxState) -> bool:
    # Django drops on-commit hooks of rolled-back (savepoint) blocks, so the marker is
    # still queued exactly while the writes it stands for may commit.
    if not conn.in_atomic_block:
        return False
    return any(entry[1] is state.marker for entry in conn.run_on_commit)


def record_write(label: str, pks: Iterable[Any] | None, using: str) -> None:
    """Note rows changed inside the current transaction (None: rows unknown, bypass all)."""
    conn = connections[using]
    if not conn.in_atomic_block:
        return
    state = _local.states.get(using)
    if state is None or not _is_live(conn, state):
        state = _local.states[using] = _TxState()
        conn.on_commit(state.marker)
    if pks is None:
        state.touched[label] = ALL_ROWS
        return
    rows = state.touched.get(label)
    if rows is ALL_ROWS:
        return
    if rows is None:
        rows = state.touched[label] = set()
    assert isinstance(rows, set)
    rows.update(pks)


def is_touched(label: str, pk: Any) -> bool:
    """Whether the calling thread's open transaction changed this row."""
    states = _local.states
    if not states:  # the common case: no write transaction open in this thread
        return False
    for alias, state in list(states.items()):
        rows = state.touched.get(label)
        if rows is None or (rows is not ALL_ROWS and pk not in rows):
            continue
        if _is_live(connections[alias], state):
            return True
        states.pop(alias, None)
    return False


def can_fill(using: str) -> bool:
    """Whether a row read on this connection may be stored in the shared cache.

    Outside a transaction, always. Inside one, only where every statement sees the latest
    committed data (PostgreSQL at READ COMMITTED): an older snapshot could hold a row that
    a committed writer has already invalidated, and the lease taken after that
    invalidation would not catch it.
    """
    conn = connections[using]
    if not conn.in_atomic_block:
        return True
    if conn.vendor != "postgresql":
        return False
    level = getattr(conn, "isolation_level", None)
    return level is None or _is_read_committed(level)


def _is_read_committed(level: Any) -> bool:
    return "READ_COMMITTED" in str(getattr(level, "name", level)).upper().replace(" ", "_")


def is_model_touched(label: str) -> bool:
    """Whether the calling thread's open transaction changed any row of this model."""
    states = _local.states
    if not states:
        return False
    for alias, state in list(states.items()):
        if label not in state.touched:
            continue
        if _is_live(connections[alias], state):
            return True
        states.pop(alias, None)
    return False
