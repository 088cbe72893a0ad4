"""Transaction awareness: what an open transaction changed, and what to do when it commits.

Test cases (``django.test.TestCase``, pytest-django's ``django_db``) run each test inside
atomic blocks that Django marks ``_from_testcase`` and never commits. For the cache those
blocks are the database as it stands: a write made while only they are open counts as
committed (it is invalidated at once), reads fill the cache, and the user's own
``atomic()`` inside a test behaves as at its commit when its savepoint is released. What a
test filled is tagged with a token of its innermost test block, so once that block is
rolled back nothing it cached is believed again (see :func:`scope_tag`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = [
    "ALL_ROWS",
    "TxState",
    "can_fill",
    "holds_open_statement",
    "in_test_scope",
    "in_transaction",
    "is_model_touched",
    "is_touched",
    "released",
    "scope_for",
    "scope_tag",
    "settling",
    "state_for",
]

logger = logging.getLogger("django_cachestrat")

#: Marks a model whose changed rows are not known one by one (a bulk update).
ALL_ROWS: frozenset[Any] = frozenset({object()})

Hook = Callable[["TxState"], None]


class TxState:
    """What one transaction changed, tied to a marker in its connection's on-commit hooks.

    Django drops the on-commit hooks of a rolled-back block, so the marker is still queued
    exactly while the writes it stands for may commit; when it runs, the transaction has
    committed and the hooks added with :meth:`add_hook` do the deferred work.
    """

    __slots__ = (
        "__weakref__",
        "alias",
        "block",
        "changed",
        "flushed",
        "generations",
        "hooks",
        "inserted",
        "keys",
        "marker",
        "sid",
        "touched",
        "wrote",
    )

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.touched: dict[str, set[Any] | frozenset[Any]] = {}
        self.inserted: set[str] = set()
        self.keys: set[str] = set()
        self.generations: set[str] = set()
        self.changed: dict[Any, set[Any]] = {}  # plan -> pks, for after-commit work
        self.flushed: set[Any] = set()  # plans whose generation the commit bumps
        self.hooks: list[Hook] = []
        self.wrote = False  # a write statement ran: fills from this connection would leak
        # Inside a test case: the user's outermost block and its savepoint, whose release
        # is this state's commit.
        self.block: Any = None
        self.sid: str | None = None
        ref = weakref.ref(self)

        def marker() -> None:
            state = ref()
            if state is not None:
                _commit(state)

        self.marker = marker

    def add_hook(self, hook: Hook, first: bool = False) -> None:
        """Run ``hook(state)`` once the transaction commits, in the order added (``first``:
        before the others, as the invalidation must)."""
        if hook not in self.hooks:
            self.hooks.insert(0, hook) if first else self.hooks.append(hook)

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


class _Local(threading.local):
    def __init__(self) -> None:
        self.states: dict[str, TxState] = {}


_local = _Local()

#: Set once a test case's atomic block has been seen in this process; until then the hit
#: path pays nothing for test awareness.
_testing = False


def _test_depth(conn: BaseDatabaseWrapper) -> int:
    """How many of the open atomic blocks count as a test case's: the blocks Django opened
    for the test (the outermost ones), and blocks without a savepoint right above them
    (``atomic(savepoint=False)``, as Django's own ``delete()`` and ``bulk_create()`` open):
    such a block cannot be rolled back on its own, only with the whole test, and it sends
    nothing when it ends."""
    global _testing
    depth = 0
    for i, block in enumerate(conn.atomic_blocks):
        if getattr(block, "_from_testcase", False):
            _testing = True
        elif not (depth and conn.savepoint_ids[i - 1] is None):
            break
        depth += 1
    return depth


def in_transaction(using: str) -> bool:
    """Whether writes on this connection wait for a commit (a test case's blocks aside)."""
    conn = connections[using]
    return conn.in_atomic_block and len(conn.atomic_blocks) > _test_depth(conn)


#: Aliases whose write statement is still running its execute wrapper (statements.py).
_settling: contextvars.ContextVar[frozenset[str]] = contextvars.ContextVar(
    "django_cachestrat_settling", default=frozenset()
)


@contextlib.contextmanager
def settling(using: str) -> Iterator[None]:
    """Around the invalidations a write statement sends from inside its execute wrapper."""
    token = _settling.set(_settling.get() | {using})
    try:
        yield
    finally:
        _settling.reset(token)


def holds_open_statement(using: str) -> bool:
    """Whether a write on this connection is still open, so that no transaction may begin
    or commit on it: SQLite keeps an ``INSERT ... RETURNING`` running until its rows are
    read, and a commit then fails and rolls the write back."""
    return using in _settling.get() and connections[using].vendor == "sqlite"


def _commit(state: TxState) -> None:
    """Run the state's hooks, each on its own: one that raises (a receiver of the
    ``invalidated`` signal, say) must not cost the others their work, as Django's own
    hooks after it would be. ``captureOnCommitCallbacks(execute=True)`` runs the marker
    while the transaction is still open and the marker still queued: then the state stays,
    so the transaction's writes keep bypassing the cache until it really ends."""
    conn = connections[state.alias]
    if not (conn.in_atomic_block and _queued(conn, state) is not None):
        _forget(state)
    for hook in list(state.hooks):
        try:
            hook(state)
        except Exception:
            logger.exception("django_cachestrat: a commit hook failed (%r)", hook)


def _forget(state: TxState) -> None:
    for alias, current in list(_local.states.items()):
        if current is state:
            del _local.states[alias]


def _queued(conn: BaseDatabaseWrapper, state: TxState) -> int | None:
    """The index of the state's marker among the connection's on-commit hooks."""
    for i, entry in enumerate(conn.run_on_commit):
        if entry[1] is state.marker:
            return i
    return None


def _is_live(conn: BaseDatabaseWrapper, state: TxState) -> bool:
    if not conn.in_atomic_block:
        return False
    queued = _queued(conn, state)
    if queued is None:
        return False
    if state.block is not None and not any(b is state.block for b in conn.atomic_blocks):
        # A test's inner block without a savepoint ended, and was not rolled back (its
        # marker is still queued): it committed as far as the test is concerned.
        _run(conn, state, queued)
        return False
    return True


def _run(conn: BaseDatabaseWrapper, state: TxState, index: int) -> None:
    del conn.run_on_commit[index]
    state.marker()


def state_for(using: str) -> TxState | None:
    """The open transaction's state on this connection (created on demand), or None in
    autocommit and while only a test case's blocks are open."""
    conn = connections[using]
    if not conn.in_atomic_block:
        return None
    return _state(conn, _test_depth(conn))


#: ``scope_for`` in autocommit.
_AUTOCOMMIT: tuple[TxState | None, bool] = (None, False)


def scope_for(using: str) -> tuple[TxState | None, bool]:
    """``state_for(using)`` and ``in_test_scope(using)`` at once, from one look-up of the
    connection (Django's connections are thread-local, and the look-up is not free)."""
    conn = connections[using]
    if not conn.in_atomic_block:
        return _AUTOCOMMIT
    depth = _test_depth(conn)
    return _state(conn, depth), bool(depth) and depth == len(conn.atomic_blocks)


def _state(conn: BaseDatabaseWrapper, depth: int) -> TxState | None:
    if depth == len(conn.atomic_blocks):
        return None
    using = conn.alias
    state = _local.states.get(using)
    if state is None or not _is_live(conn, state):
        state = _local.states[using] = TxState(using)
        if depth:
            state.block = conn.atomic_blocks[depth]
            state.sid = conn.savepoint_ids[depth - 1]
        # First in line: a hook registered earlier that raises makes Django drop the hooks
        # after it, and the committed write must still be invalidated.
        entry = (set(conn.savepoint_ids), state.marker, True)  # as on_commit(robust=True)
        conn.run_on_commit.insert(0, entry)  # type: ignore[arg-type]
    return state


def released(conn: BaseDatabaseWrapper, sql: str) -> None:
    """A savepoint was released: if it was the user's outermost block inside a test
    case, and that block was not rolled back, it has committed for the cache."""
    state = _local.states.get(conn.alias)
    if state is None or state.sid is None:
        return
    if sql.strip().rstrip(";") != conn.ops.savepoint_commit_sql(state.sid):
        return
    queued = _queued(conn, state)
    if queued is None:  # rolled back: Django dropped the marker
        _forget(state)
        return
    _run(conn, state, queued)


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

    In autocommit, and while only a test case's blocks are open, yes; under
    ``set_autocommit(False)``, no: the connection may hold writes the app never saw.
    Inside a transaction, only if it has run no write statement (a trigger, a
    database-level cascade or an unparsed statement may have changed rows the app cannot
    name, and a rollback would make the filled row false) and every statement sees the
    latest committed data (PostgreSQL at READ COMMITTED): an older snapshot could hold a
    row that a committed writer has already invalidated, and the lease taken after that
    invalidation would not catch it.
    """
    conn = connections[using]
    if not conn.in_atomic_block:
        return conn.get_autocommit()
    if _test_depth(conn) == len(conn.atomic_blocks):
        return True
    if any(state.wrote or label in state.inserted for state in _live_states()):
        return False
    if conn.vendor != "postgresql":
        return False
    level = getattr(conn, "isolation_level", None)
    return level is None or "READ_COMMITTED" in str(getattr(level, "name", level)).upper()


# Test scopes: what a test filled is tagged with its innermost test block's token.

_tokens: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()


def _innermost_test_block(conn: BaseDatabaseWrapper) -> Any:
    """The innermost block the test case itself opened: a new object for every test (a
    savepoint-less block above it may be one object reused by every test, a decorator)."""
    depth = _test_depth(conn) if conn.in_atomic_block else 0
    for block in reversed(conn.atomic_blocks[:depth]):
        if getattr(block, "_from_testcase", False):
            return block
    return None


def scope_tag(using: str, detect: bool = False) -> bytes:
    """``b""``, or ``b"~<token>"`` while a test case's blocks are open on this connection.

    Payloads carry it with their generation, so a row cached inside one test's
    transaction is believed only inside that very block: once the test is rolled back
    no later reader computes the same token. ``detect`` looks at the connection even
    before any test block was seen (the fill path); the hit path relies on the flag.
    """
    if not (_testing or detect):
        return b""
    block = _innermost_test_block(connections[using])
    if block is None:
        return b""
    try:
        return _tokens[block]
    except KeyError:
        token = _tokens[block] = b"~" + os.urandom(6).hex().encode()
        return token


def in_test_scope(using: str) -> bool:
    """Whether only a test case's blocks are open on this connection (none of the user's)."""
    conn = connections[using]
    if not conn.in_atomic_block:
        return False
    depth = _test_depth(conn)
    return bool(depth) and depth == len(conn.atomic_blocks)
