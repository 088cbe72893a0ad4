"""One-row fills: the fill query compiled once per model and connection, then only executed."""

from __future__ import annotations

import weakref
from typing import Any, NamedTuple

from django.db import connections, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models.lookups import Exact
from django.db.models.sql.compiler import SQLCompiler

from .plan import ModelPlan

__all__ = ["fill_one"]


class _Compiled(NamedTuple):
    """What Django's ``ModelIterable`` works out for every query, worked out once."""

    sql: str
    lookup: Exact  # the ``pk = %s`` lookup, rebuilt for each pk to prepare its value
    compiler: SQLCompiler
    converters: dict[int, Any]
    start: int  # the model's columns in a row: row[start:end]
    end: int
    init_list: list[str]
    annotations: tuple[tuple[str, int], ...]  # the JSON fields' text columns


# NOTE: connections are per thread, and converters may use theirs: one cache per connection
# (a settings change replaces the connections, and with them these caches).
_cache: weakref.WeakKeyDictionary[BaseDatabaseWrapper, dict[type[models.Model], _Compiled]]
_cache = weakref.WeakKeyDictionary()


def _compile(plan: ModelPlan, pk: Any, using: str) -> _Compiled | None:
    """Compile ``fill_rows(using, [pk])`` as the ORM would, or None for a shape this module
    does not handle (it then goes through the ORM)."""
    query = plan.fill_rows(using, [pk]).query
    compiler = query.get_compiler(using=using)
    sql, params = compiler.as_sql()
    children = query.where.children
    if len(params) != 1 or len(children) != 1 or not isinstance(children[0], Exact):
        return None
    info = compiler.klass_info
    if info is None or compiler.has_extra_select:
        return None
    fields = info["select_fields"]
    start, end = fields[0], fields[-1] + 1
    return _Compiled(
        sql,
        children[0],
        compiler,
        compiler.get_converters([column[0] for column in compiler.select]),
        start,
        end,
        [column[0].target.attname for column in compiler.select[start:end]],
        tuple(compiler.annotation_col_map.items()),
    )


def _compiled(plan: ModelPlan, pk: Any, using: str) -> _Compiled | None:
    connection = connections[using]
    per_model = _cache.get(connection)
    if per_model is None:
        per_model = _cache[connection] = {}
    try:
        return per_model[plan.model]
    except KeyError:
        compiled = per_model[plan.model] = _compile(plan, pk, using)  # type: ignore[assignment]
        return compiled


def fill_one(plan: ModelPlan, pk: Any, using: str) -> dict[Any, models.Model] | None:
    """``{pk: instance}`` (empty if no such row), read exactly as ``fill_rows`` reads it,
    without building and compiling a queryset each time; None if the model's query has a
    shape this does not handle."""
    compiled = _compiled(plan, pk, using)
    if compiled is None:
        return None
    connection = compiled.compiler.connection
    # The lookup prepares the value as the ORM does (a UUID, a pk that is a foreign key).
    _, params = type(compiled.lookup)(compiled.lookup.lhs, pk).process_rhs(
        compiled.compiler, connection
    )
    with connection.cursor() as cursor:
        cursor.execute(compiled.sql, params)
        rows = cursor.fetchall()
    if compiled.converters:
        rows = list(compiled.compiler.apply_converters(rows, compiled.converters))
    found = {}
    for row in rows:
        obj = plan.model.from_db(using, compiled.init_list, row[compiled.start : compiled.end])
        for name, position in compiled.annotations:
            setattr(obj, name, row[position])
        found[obj.pk] = obj
    return found
