"""Writes that send no model signal (``QuerySet.update``, ``bulk_create``, raw SQL) seen at
the database layer: an execute wrapper on each connection invalidates what they touch."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from . import invalidation, relations, transactions
from .breaker import Unavailable
from .client import REDIS_ERRORS
from .handled import mark as _mark
from .sqllex import head
from .sqlshape import Outcome, Table, Tables, classify, mentioned

__all__ = ["install", "reset", "tables", "uninstall"]

logger = logging.getLogger("django_cachestrat")

# The words a write can start with, and a CTE, which may hold one. Anything else is a read
# and pays for this one prefix test only (a read after a leading comment, for a second one).
_KINDS = ("UPDATE", "DELETE", "INSERT", "TRUNCATE", "MERGE", "WITH")
# RELEASE SAVEPOINT: inside a test case, the commit of a user's atomic() for the cache.
_STARTS = (*_KINDS, "--", "/*", "RELEASE")

Model = type[models.Model]


class _Catalog:
    """Tables whose writes matter, built once from the models and the settings."""

    def __init__(self) -> None:
        watched = {m._meta.concrete_model or m for m in invalidation.watched_models()}
        self.graph = graph = relations.Graph()
        self.models: dict[str, Model] = {}
        specs: list[Table] = []
        self.dependents: dict[str, list[Model]] = {}
        truncating = graph.referenced_by(watched)
        for model in relations.concrete_models():
            cached = model in watched
            dependents = [m for m in graph.database_dependents(model) if _is_cached(m)]
            if cached or dependents or model._meta.db_table in truncating:
                specs.append(self._add(model, cached, dependents))
        self.tables = Tables(specs)
        names = self.tables.last_names
        # One scan tells a write that names no watched table (most writes to other tables).
        self.mention = (
            re.compile("|".join(re.escape(n) for n in names), re.IGNORECASE) if names else None
        )

    def _add(self, model: Model, cached: bool, dependents: list[Model]) -> Table:
        table = model._meta.db_table
        pk = model._meta.pk
        single = pk is not None and pk.column is not None
        lookups = tuple(f.column for f in _lookup_fields(model)) if cached else ()
        self.models[table] = model
        self.dependents[table] = dependents
        return Table(table, str(pk.column) if single else None, lookups, cached)


def _is_cached(model: Model) -> bool:
    return bool(invalidation.family(model))


_catalog: _Catalog | None = None


def catalog() -> _Catalog:
    global _catalog
    if _catalog is None:
        _catalog = _Catalog()
    return _catalog


def tables() -> dict[str, Model]:
    """db_table → model, for every table whose rows some cached model stores."""
    known = catalog()
    return {table: model for table, model in known.models.items() if _is_cached(model)}


def reset() -> None:
    global _catalog
    _catalog = None


def install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: add the wrapper once to this connection.

    Appending to ``execute_wrappers`` is what ``connection.execute_wrapper()`` does on
    entry; the wrapper stays for the connection's life instead of one ``with`` block.
    """
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_wrapper)


def uninstall(connection: BaseDatabaseWrapper) -> None:
    """Take the wrapper off this connection again."""
    while _wrapper in connection.execute_wrappers:
        connection.execute_wrappers.remove(_wrapper)


Execute = Callable[[Any, Any, bool, dict[str, Any]], Any]


def _wrapper(execute: Execute, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    # Reads pay for one prefix test and nothing more.
    if isinstance(sql, str):
        start = sql.lstrip()[:8].upper()
        if not start.startswith(_STARTS):
            return execute(sql, params, many, context)
        if start.startswith("RELEASE"):
            result = execute(sql, params, many, context)
            transactions.released(context["connection"], sql)
            return result
        return _capture(execute, sql, sql, params, many, context)
    text = _render(sql, context)  # a psycopg sql.Composed, say: read it, run it as given
    if text is None:
        return execute(sql, params, many, context)
    return _capture(execute, sql, text, params, many, context)


def _capture(
    execute: Execute, sql: Any, text: str, params: Any, many: bool, context: dict[str, Any]
) -> Any:
    if not head(text).startswith(_KINDS):  # a read after a comment, or a Composed read
        return execute(sql, params, many, context)
    conn: BaseDatabaseWrapper = context["connection"]
    invalidation.note_write(conn.alias)  # to any table: the transaction fills no more
    known = catalog()
    if known.mention is None or not known.mention.search(text):
        return execute(sql, params, many, context)
    try:
        outcome = classify(
            text,
            params,
            known.tables,
            many=many,
            returning=isinstance(sql, str) and _can_return(conn),
            qualify=conn.vendor == "postgresql",
        )
    except Exception:  # a statement this reader cannot take: run it, and flush what it names
        logger.exception("could not read a write statement; flushing the tables it names")
        outcome = mentioned(text, known.tables)
    if outcome.action == "untouched" and outcome.kind != "delete":  # only its cascades matter
        return execute(sql, params, many, context)
    _mark(None, None)
    result = execute(outcome.sql or sql, params, many, context)
    try:
        with transactions.settling(conn.alias):
            _settle(outcome, context, conn.alias)
    except (Unavailable, *REDIS_ERRORS):
        raise  # FAIL_OPEN = False: the invalidation is kept for replay, and the error rises
    except Exception:  # the statement has run: never fail it now, flush instead
        logger.exception("could not read the rows of a write; flushing its tables")
        for table in {outcome.target, *outcome.flushed} - {None}:
            _flush(known, str(table), conn.alias)
    return result


def _render(sql: Any, context: dict[str, Any]) -> str | None:
    """The text of a psycopg ``sql.Composable`` statement, to inspect (it runs as given)."""
    as_string = getattr(sql, "as_string", None)
    raw = getattr(context["connection"], "connection", None)
    if as_string is None or raw is None:
        return None
    try:
        return str(as_string(raw))
    except Exception:  # a Composable this connection cannot render: psycopg will say why
        return None


def _settle(outcome: Outcome, context: dict[str, Any], using: str) -> None:
    known = catalog()
    if outcome.kind in ("truncate", "write"):
        for table in outcome.flushed:
            _flush(known, table, using, cascade=outcome.cascade)
        if outcome.kind == "truncate":
            cascaded = outcome.cascade
            emptied = [m for t in outcome.flushed for m in _emptied(known, t, cascaded)]
            invalidation.truncated(emptied, using)
        return
    table = str(outcome.target)
    model = known.models[table]
    cursor = context["cursor"]
    if outcome.action == "returning":
        rows = _fetch(cursor)
        _changed(model, rows, outcome, using)
        deleted = rows is None or bool(rows)
    else:
        _written(model, outcome, cursor, using)
        deleted = cursor.rowcount != 0
    if outcome.kind in ("delete", "merge") and deleted:
        # The database's own ON DELETE actions changed rows no statement names.
        invalidation.invalidate_models(known.dependents[table], using)


def _flush(known: _Catalog, table: str, using: str, cascade: bool = False) -> None:
    model = known.models[table]
    emptied = known.graph.truncated_with(model) if cascade else []
    invalidation.invalidate_models([model, *emptied, *known.dependents[table]], using)


def _emptied(known: _Catalog, table: str, cascade: bool) -> list[Model]:
    model = known.models[table]
    return [model, *(known.graph.truncated_with(model) if cascade else [])]


def _fetch(cursor: Any) -> list[Any] | None:
    """The rows a statement returned, or None past ``BULK_LIMIT`` (never all in Python)."""
    limit = invalidation.BULK_LIMIT
    count = getattr(cursor, "rowcount", -1)
    if count is not None and count > limit:
        return None
    rows = cursor.fetchmany(limit + 1)
    return None if len(rows) > limit else list(rows)


def _changed(model: Model, rows: list[Any] | None, outcome: Outcome, using: str) -> None:
    if rows is None:
        invalidation.invalidate_unknown(model, using)
        return
    names = _names_of(model, outcome.lookups)
    values = {names[c]: [row[i + 1] for row in rows] for i, c in enumerate(outcome.lookups)}
    pks = [row[0] for row in rows]
    invalidation.invalidate_pks(model, pks, using, values=values)
    _mark(model, pks)


def _written(model: Model, outcome: Outcome, cursor: Any, using: str) -> None:
    """A statement run as written: name its rows from its shape or its own RETURNING."""
    if outcome.action == "untouched":
        return
    returned = outcome.action == "returned" or outcome.kind == "insert"
    pks = _own_returned(cursor, outcome.pk_index) if returned else None
    if outcome.kind in ("insert", "merge"):
        if outcome.upsert:  # rows that existed may have changed: they cannot be named
            invalidation.invalidate_unknown(model, using)
        invalidation.invalidate_absences(model, using, pks)
        _mark(model, pks)
        return
    if outcome.action == "shape":
        pks = list(outcome.pks)
        names = _names_of(model, tuple(outcome.values))
        values = {names[c]: list(v) for c, v in outcome.values.items()}
        invalidation.invalidate_pks(model, pks, using, values=values)
    elif pks is not None:  # the statement's own RETURNING named them
        invalidation.invalidate_pks(model, pks, using)
    else:
        invalidation.invalidate_unknown(model, using)
    if outcome.lookup_changed:
        invalidation.invalidate_absences(model, using)
    _mark(model, pks)


def _own_returned(cursor: Any, index: int | None) -> list[Any] | None:
    """The pks a statement's own ``RETURNING`` produced, read and then rewound so Django
    reads them too (client-side psycopg cursors keep every row in memory)."""
    if index is None:
        return None
    raw = getattr(cursor, "cursor", None)
    try:
        import psycopg
    except ImportError:
        return None
    if not isinstance(raw, psycopg.Cursor) or (raw.rowcount or 0) > invalidation.BULK_LIMIT:
        return None
    rows = raw.fetchall()
    raw.scroll(0, mode="absolute")
    return [row[index] for row in rows]


def _lookup_fields(model: Model) -> list[Any]:
    """Cached unique lookups whose column lives in this model's table."""
    fields = {}
    for plan in invalidation.family(model):
        for field in plan.lookup_fields.values():
            if field.model._meta.db_table == model._meta.db_table:
                fields[field.name] = field
    return list(fields.values())


def _names_of(model: Model, columns: Iterable[str]) -> dict[str, str]:
    by_column = {f.column: f.name for f in _lookup_fields(model)}
    return {c: by_column[c] for c in columns}


def _can_return(conn: BaseDatabaseWrapper) -> bool:
    if conn.vendor == "postgresql":
        return True
    if conn.vendor == "sqlite":
        import sqlite3

        return sqlite3.sqlite_version_info >= (3, 35)
    return False
