"""Writes that send no model signal (``QuerySet.update``, ``bulk_create``, raw SQL) seen at
the database layer: an execute wrapper on each connection invalidates what they touch."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

from . import invalidation

__all__ = ["install", "reset"]

_TARGET = re.compile(
    r"""^\s*(UPDATE|DELETE\s+FROM|INSERT\s+INTO)\s+[`"\[]?([\w$]+)[`"\]]?""", re.IGNORECASE
)
_QUOTED = re.compile(r"""[`"]([^`"]+)[`"]""")
_KINDS = ("UPDATE", "DELETE", "INSERT", "TRUNCATE")

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
    if head.startswith("TRUNCATE"):
        result = execute(sql, params, many, context)
        _truncated(sql, conn.alias)
        return result
    match = _TARGET.match(sql)
    model = tables().get(match.group(2)) if match else None
    if model is None:
        return execute(sql, params, many, context)
    if head.startswith("INSERT"):
        result = execute(sql, params, many, context)
        invalidation.invalidate_absences(model, conn.alias)
        return result
    return _changed_rows(execute, sql, params, many, context, model, head)


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
    if not many and _can_return(conn) and "RETURNING" not in sql.upper():
        # The pks, and the new values of unique lookups (a cached "no such username" may
        # now be wrong), cost a few returned columns instead of a read beforehand.
        lookups = _lookup_fields(model) if head.startswith("UPDATE") else []
        columns = [_pk_column(model), *(f.column for f in lookups)]
        returning = ", ".join(conn.ops.quote_name(c) for c in columns)
        result = execute(f"{sql.rstrip().rstrip(';')} RETURNING {returning}", params, many, context)
        rows = context["cursor"].fetchall()
        values = {f.name: [row[i + 1] for row in rows] for i, f in enumerate(lookups)}
        invalidation.invalidate_pks(model, [row[0] for row in rows], conn.alias, values=values)
        return result
    pks = None if many else _pks_by_shape(sql, params, model)
    result = execute(sql, params, many, context)
    if pks is None:
        invalidation.invalidate_unknown(model, conn.alias)
        return result
    invalidation.invalidate_pks(model, pks, conn.alias)
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
