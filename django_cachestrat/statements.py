"""Writes that send no model signal (``QuerySet.update``, ``bulk_create``, raw SQL) seen at
the database layer: an execute wrapper on each connection invalidates what they touch."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from . import invalidation, transactions

__all__ = ["install", "reset"]

_TARGET = re.compile(
    r"""^\s*(UPDATE|DELETE\s+FROM|INSERT\s+INTO)\s+[`"\[]?([\w$]+)[`"\]]?""", re.IGNORECASE
)
_QUOTED = re.compile(r"""[`"]([^`"]+)[`"]""")
_RETURNING = re.compile(r"""\s+RETURNING\s+[\w`".,\s]+$""", re.IGNORECASE)
_KINDS = ("UPDATE", "DELETE", "INSERT", "TRUNCATE", "RELEASE")

_tables: dict[str, type[models.Model]] | None = None


def tables() -> dict[str, type[models.Model]]:
    """db_table → model, for every table whose rows some cached model stores."""
    global _tables
    if _tables is None:
        _tables = {}
        for model in invalidation.watched_models():
            if not model._meta.proxy:
                _tables[model._meta.db_table] = model
    return _tables


def reset() -> None:
    global _tables
    _tables = None


def install(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: add the wrapper once to this connection.

    Appending to ``execute_wrappers`` is what ``connection.execute_wrapper()`` does on
    entry; the wrapper stays for the connection's life instead of one ``with`` block.
    """
    if _wrapper not in connection.execute_wrappers:
        connection.execute_wrappers.append(_wrapper)


Execute = Callable[[str, Any, bool, dict[str, Any]], Any]


def _wrapper(execute: Execute, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    # Reads pay for one prefix test and nothing more.
    if not isinstance(sql, str) or not sql.lstrip()[:8].upper().startswith(_KINDS):
        return execute(sql, params, many, context)
    conn: BaseDatabaseWrapper = context["connection"]
    head = sql.lstrip()[:8].upper()
    if head.startswith("RELEASE"):  # a savepoint: inside a test case, maybe a commit
        result = execute(sql, params, many, context)
        transactions.released(conn, sql)
        return result
    invalidation.note_write(conn.alias)
    if head.startswith("TRUNCATE"):
        result = execute(sql, params, many, context)
        _truncated(sql, conn.alias)
        return result
    match = _TARGET.match(sql)
    model = tables().get(match.group(2)) if match else None
    if model is None:
        return execute(sql, params, many, context)
    if head.startswith("INSERT"):
        return _inserted_rows(execute, sql, params, many, context, model)
    return _changed_rows(execute, sql, params, many, context, model, head)


class _Handled(threading.local):
    """The rows the last statement in this thread invalidated through RETURNING, so the
    model signal that follows it (``save()``, ``delete()``) need not do it again."""

    label: str | None = None
    pks: frozenset[Any] = frozenset()


_handled = _Handled()


def was_handled(model: type[models.Model], pk: Any) -> bool:
    concrete = model._meta.concrete_model or model
    try:
        return _handled.label == concrete._meta.label_lower and pk in _handled.pks
    except TypeError:  # an unhashable pk value
        return False


def _mark(model: type[models.Model], pks: list[Any] | None) -> None:
    _handled.label = model._meta.label_lower if pks is not None else None
    _handled.pks = frozenset(pks or ())


def _inserted_rows(
    execute: Execute,
    sql: str,
    params: Any,
    many: bool,
    context: dict[str, Any],
    model: type[models.Model],
) -> Any:
    conn: BaseDatabaseWrapper = context["connection"]
    result = execute(sql, params, many, context)
    upper = sql.upper()
    if "ON CONFLICT" in upper and "DO UPDATE" in upper:
        # An upsert may have changed rows that exist: they cannot be named here.
        invalidation.invalidate_unknown(model, conn.alias)
    pks = None if many else _returned_pks(context, sql, model)
    invalidation.invalidate_absences(model, conn.alias, pks)
    _mark(model, pks)
    return result


def _returned_pks(context: dict[str, Any], sql: str, model: type[models.Model]) -> list[Any] | None:
    """The pks an ``INSERT … RETURNING pk, …`` produced, read and then rewound so Django
    reads them too (client-side psycopg cursors keep every row in memory)."""
    _, found, returning = sql.upper().rpartition(" RETURNING ")
    if not found or model._meta.pk is None or model._meta.pk.column is None:
        return None
    if _pk_column(model).upper() not in returning.split(",")[0]:
        return None
    cursor = getattr(context["cursor"], "cursor", None)
    try:
        import psycopg
    except ImportError:
        return None
    if not isinstance(cursor, psycopg.Cursor):  # client-side: every row in memory
        return None
    rows = cursor.fetchall()
    cursor.scroll(0, mode="absolute")
    return [row[0] for row in rows]


def _changed_rows(
    execute: Execute,
    sql: str,
    params: Any,
    many: bool,
    context: dict[str, Any],
    model: type[models.Model],
    head: str,
) -> Any:
    conn: BaseDatabaseWrapper = context["connection"]
    if model._meta.pk is None or model._meta.pk.column is None:  # a composite primary key
        result = execute(sql, params, many, context)
        invalidation.invalidate_unknown(model, conn.alias)
        return result
    if not many and _can_return(conn) and "RETURNING" not in sql.upper():
        # The pks, and the new values of unique lookups (a cached "no such username" may
        # now be wrong), cost a few returned columns instead of a read beforehand.
        lookups = _lookup_fields(model) if head.startswith("UPDATE") else []
        columns = [_pk_column(model), *(f.column for f in lookups)]
        returning = ", ".join(conn.ops.quote_name(c) for c in columns)
        result = execute(f"{sql.rstrip().rstrip(';')} RETURNING {returning}", params, many, context)
        rows = context["cursor"].fetchall()
        values = {f.name: [row[i + 1] for row in rows] for i, f in enumerate(lookups)}
        returned = [row[0] for row in rows]
        invalidation.invalidate_pks(model, returned, conn.alias, values=values)
        _mark(model, returned)
        return result
    # Django 6 adds its own RETURNING when save() writes an expression (a counter's
    # change): the pks are then read from the WHERE clause before it.
    shaped = None if many else _pks_by_shape(_RETURNING.sub("", sql), params, model)
    result = execute(sql, params, many, context)
    if shaped is None:
        invalidation.invalidate_unknown(model, conn.alias)
        return result
    invalidation.invalidate_pks(model, shaped, conn.alias)
    if head.startswith("UPDATE") and any(f'{f.column}"' in sql for f in _lookup_fields(model)):
        invalidation.invalidate_absences(model, conn.alias)
    return result


def _lookup_fields(model: type[models.Model]) -> list[Any]:
    """Cached unique lookups whose column lives in this model's table."""
    fields = {}
    for plan in invalidation.family(model):
        for field in plan.lookup_fields.values():
            if field.model._meta.db_table == model._meta.db_table:
                fields[field.name] = field
    return list(fields.values())


def _pks_by_shape(sql: str, params: Any, model: type[models.Model]) -> list[Any] | None:
    """The pks of ``... WHERE "t"."pk" = %s`` or ``... IN (%s, ...)``, as Django writes
    for ``save()``, deletes by pk and ``SET_NULL``, read from the parameters."""
    if not isinstance(params, Sequence) or isinstance(params, str):
        return None
    column = re.escape(_pk_column(model))
    table = re.escape(model._meta.db_table)
    match = re.search(
        rf"""WHERE\s+(?:[`"]?{table}[`"]?\.)?[`"]?{column}[`"]?\s*(=\s*%s|IN\s*\(([%s,\s]+)\))\s*$""",
        sql,
        re.IGNORECASE,
    )
    if match is None:
        return None
    count = 1 if match.group(2) is None else match.group(2).count("%s")
    if count > len(params) or sql.count("%s") != len(params):
        return None
    return list(params[len(params) - count :])


def _pk_column(model: type[models.Model]) -> str:
    return str(model._meta.pk.column)


def _can_return(conn: BaseDatabaseWrapper) -> bool:
    if conn.vendor == "postgresql":
        return True
    if conn.vendor == "sqlite":
        import sqlite3

        return sqlite3.sqlite_version_info >= (3, 35)
    return False


def _truncated(sql: str, using: str) -> None:
    known = tables()
    for name in _QUOTED.findall(sql) or sql.split()[1:]:
        model = known.get(name.strip(",;"))
        if model is not None:
            invalidation.invalidate_unknown(model, using)
