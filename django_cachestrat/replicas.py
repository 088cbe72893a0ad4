"""Lag-safe fills from replicas: remote markers (Nishtala et al., NSDI 2013, §5).

A write committed on a primary that has replicas (``CACHESTRAT["REPLICAS"]``) deletes its
keys and, in the same round trip, sets a *written* marker next to each of them (rows,
lookups, generations) that lives ``REPLICA_LAG`` seconds. A fill that would read a replica
first reads the markers of what it fills, after taking its leases: a row marked is read from
the primary instead, and so is everything once the model was flushed. A replica's "no such
row" is checked on the primary while the model's absence generation is marked (an insert).

Why after the leases: a write that commits after the markers were read deletes the leases
too, so that fill is dropped; a write that committed before has set its markers already.
The hit path reads no marker; a miss on a replica pays one MGET.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db import DatabaseError, models
from django.db.backends.base.base import BaseDatabaseWrapper

from .breaker import Unavailable
from .client import topology
from .conf import conf
from .failopen import fail_open
from .keys import KeySpace
from .plan import ModelPlan

__all__ = ["fill_rows", "marks", "primary_values", "warn_undeclared"]

logger = logging.getLogger("django_cachestrat")

#: Aliases whose first connection in this process was checked for being a replica.
_checked: set[str] = set()


@fail_open
def _mget(keys: list[str]) -> list[bytes | None]:
    return topology().mget(keys)


def marks(keys: Iterable[str], generations: Iterable[str]) -> list[str]:
    """The markers a write on a replicated primary sets: one per row, lookup and generation
    it invalidates (leases need none: they are deleted with their key)."""
    written = KeySpace.written
    return [written(k) for k in keys if not k.endswith(":lease")] + [
        written(g) for g in generations
    ]


def _marked(space: KeySpace, keys: list[str]) -> tuple[list[bool], bool, bool]:
    """Whether each key is marked; whether the model was flushed; whether rows were inserted."""
    names = [KeySpace.written(k) for k in keys]
    names += [KeySpace.written(space.generation), KeySpace.written(space.absent)]
    try:
        found = _mget(names)
    except Unavailable:  # cannot tell: the primary is always right
        return [True] * len(keys), True, True
    flags = [value is not None for value in found]
    return flags[: len(keys)], flags[-2], flags[-1]


def fill_rows(
    plan: ModelPlan, space: KeySpace, pks: list[Any], using: str
) -> dict[Any, models.Model]:
    """The rows with these pks as a fill may store them: from the replica ``using``, but
    from its primary for every row a recent write marked."""
    marked, flushed, inserted = _marked(space, [space.row(pk) for pk in pks])
    primary = plan.replicas[using]
    if flushed:
        return _fetch(plan, pks, primary)
    stale = [pk for pk, flag in zip(pks, marked, strict=True) if flag]
    fresh = [pk for pk, flag in zip(pks, marked, strict=True) if not flag]
    rows = _fetch(plan, fresh, using) if fresh else {}
    missing = [pk for pk in fresh if pk not in rows]
    if inserted:  # the replica may not have the new rows yet
        stale += missing
    if stale:
        rows.update(_fetch(plan, stale, primary))
    return rows


def primary_values(
    plan: ModelPlan, space: KeySpace, name: str, values: list[Any], using: str
) -> dict[Any, Any]:
    """``{value: pk}`` of a unique lookup, read as :func:`fill_rows` reads rows."""
    marked, flushed, inserted = _marked(space, [space.lookup(name, v) for v in values])
    primary = plan.replicas[using]
    if flushed:
        return _pointers(plan, name, values, primary)
    stale = [v for v, flag in zip(values, marked, strict=True) if flag]
    fresh = [v for v, flag in zip(values, marked, strict=True) if not flag]
    found = _pointers(plan, name, fresh, using) if fresh else {}
    if inserted:
        stale += [v for v in fresh if v not in found]
    if stale:
        found.update(_pointers(plan, name, stale, primary))
    return found


def _fetch(plan: ModelPlan, pks: list[Any], using: str) -> dict[Any, models.Model]:
    return {obj.pk: obj for obj in plan.fill_rows(using, pks)}


def _pointers(plan: ModelPlan, name: str, values: list[Any], using: str) -> dict[Any, Any]:
    query = plan.rows(using).filter(**{f"{name}__in": values}).order_by()
    return dict(query.values_list(name, "pk"))


def warn_undeclared(connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """``connection_created`` receiver: once per alias and process, warn when a PostgreSQL
    connection is a replica (in recovery) that ``REPLICAS`` does not map. Its rows are then
    cached under keys of its own, which writes on its primary never delete."""
    alias = connection.alias
    if alias in _checked or connection.vendor != "postgresql":
        return
    _checked.add(alias)
    if alias in conf.REPLICAS:
        return
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery()")
            (in_recovery,) = cursor.fetchone()
    except DatabaseError:  # not ours to fail a connection over
        return
    if in_recovery:
        logger.warning(
            "Database %r is a replica but CACHESTRAT['REPLICAS'] does not map it: rows read "
            "through it are cached under keys of their own, which writes on its primary never "
            "delete. Add CACHESTRAT['REPLICAS'] = {%r: '<primary alias>'}.",
            alias,
            alias,
        )


def forget_checked() -> None:
    """Settings changed: look at each database's role again on its next connection."""
    _checked.clear()
