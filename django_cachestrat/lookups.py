"""Reads by a unique field: lookup key → pk → row, the pointer checked against the row."""

from __future__ import annotations

import contextlib
from typing import Any

from django.db import models, router

from . import replicas, requestlog, tracing
from .breaker import Unavailable
from .client import topology
from .failopen import fail_open
from .leases import MISSING, Entry, Loaded, Miss, leased
from .plan import ModelPlan
from .reads import (
    Generations,
    _absent_entry,
    _not_found,
    _read,
    _read_absent_generation,
    get,
    is_current_absence,
)
from .serializers import ABSENT, POINTER, CorruptPayload
from .transactions import is_model_touched, scope_tag

__all__ = ["get_by_lookup"]


def get_by_lookup(plan: ModelPlan, name: str, value: Any, using: str | None = None) -> models.Model:
    """The row whose unique field ``name`` equals ``value``: lookup key → pk → row."""
    field = plan.lookup_fields[name]
    value = plan.clean(field, value)
    using = using or router.db_for_read(plan.model)
    # NULL is matched by IS NULL, by any number of rows; under a collation the database
    # may find equal what a key tells apart: the database answers both.
    if value is None or name in plan.inexact_lookups or is_model_touched(plan.keys.label):
        return _db_lookup(plan, name, value, using)
    space = plan.space(using)
    key = space.lookup(name, value)
    try:
        generations, (data,) = _read(space, [key], using)
    except Unavailable:
        return _db_lookup(plan, name, value, using)
    pk = _decode_pointer(plan, data, generations) if data is not None else None
    if (log := requestlog.active()) is not None:  # a debug panel is recording
        log.lookup(plan.keys.label, pk, MISSING)
    if pk is None:
        pks = _resolve_lookup(plan, name, [Miss(value, key, data or b"")], generations, using)
        pk = pks.get(value, MISSING)
        if (log := requestlog.active()) is not None:
            log.lookup_filled(plan.keys.label, pk is not MISSING)
    if pk is MISSING:
        raise plan.does_not_exist(_not_found(plan, name, value))
    try:
        instance = get(plan, pk, using)
    except plan.does_not_exist:
        instance = None
    # The pointer is checked against the row, so a renamed or deleted row never resolves
    # by its old value; no extra query on save is needed to find the old value.
    if instance is None or getattr(instance, field.attname) != value:
        _forget(key)
        return _db_lookup(plan, name, value, using)
    return instance


def _decode_pointer(plan: ModelPlan, data: bytes, generations: Generations) -> Any:
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.kind == POINTER and payload.generation == generations.row:
        try:
            return plan.clean_pk(payload.values[0])
        except (ValueError, IndexError):
            return None
    if payload.kind == ABSENT and is_current_absence(payload, generations):
        return MISSING
    return None


def _resolve_lookup(
    plan: ModelPlan, name: str, misses: list[Miss], generations: Generations, using: str
) -> Any:
    codec = plan.codec
    generations.rescope(scope_tag(using, detect=True))
    generations.establish()
    _read_absent_generation(generations)

    def decode(data: bytes) -> Any:
        return _decode_pointer(plan, data, generations)

    def load(values: list[Any]) -> Loaded:
        if using in plan.replicas:  # a replica may lag: see replicas.py
            pks = replicas.primary_values(plan, generations.keys, name, values, using)
        else:
            query = plan.rows(using).filter(**{f"{name}__in": values}).order_by()
            pks = dict(query.values_list(name, "pk"))
        loaded: Loaded = {}
        for value in values:
            pk = pks.get(value, MISSING)
            if pk is MISSING:
                loaded[value] = _absent_entry(plan, generations)
            elif not generations.ready:
                loaded[value] = Entry(pk, None)  # no generation to tag it with
            else:
                payload = codec.dump_marker(POINTER, generations.row, [str(pk)])
                loaded[value] = Entry(pk, payload, plan.ttl_ms())
        return loaded

    attributes = {"cachestrat.rows": len(misses), "cachestrat.lookup": name}
    with tracing.span("fill", plan.keys.label, attributes):
        return leased(plan, misses, decode, load, using)


@fail_open
def _delete(keys: list[str]) -> None:
    topology().delete(keys)


def _forget(key: str) -> None:
    with contextlib.suppress(Unavailable):
        _delete([key])


def _db_lookup(plan: ModelPlan, name: str, value: Any, using: str) -> models.Model:
    return plan.rows(using).get(**{name: value})
