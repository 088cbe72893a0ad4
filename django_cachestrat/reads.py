"""Cache-aside reads: a lean hit path, and leased fills so no stale row is ever stored."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from django.db import models, router

from .client import Unavailable, connection, fail_open
from .leases import MISSING, Loaded, Miss, leased
from .plan import ModelPlan
from .serializers import ABSENT, POINTER, ROW, CorruptPayload
from .transactions import can_fill, is_model_touched, is_touched

__all__ = ["get", "get_by_lookup", "get_many"]


@fail_open
def _mget(keys: list[str]) -> list[bytes | None]:
    return connection().mget(keys)  # type: ignore[return-value]


def decode_row(plan: ModelPlan, data: bytes, generation: bytes, using: str) -> Any:
    """A model instance, :data:`MISSING`, or None when the payload is unusable."""
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.generation != generation:
        return None
    if payload.kind == ROW:
        return plan.model.from_db(using, plan.codec.attnames, payload.values)
    return MISSING if payload.kind == ABSENT else None


def get(plan: ModelPlan, pk: Any) -> models.Model:
    """The row with this pk, from Redis when possible; raises ``DoesNotExist``."""
    pk = plan.clean_pk(pk)
    using = router.db_for_read(plan.model)
    if is_touched(plan.keys.label, pk):
        return _db_get(plan, pk, using)
    key = plan.keys.row(pk)
    try:
        generation, data = _mget([plan.keys.generation, key])
    except Unavailable:
        return _db_get(plan, pk, using)
    generation = generation or b""
    if data is not None:
        found = decode_row(plan, data, generation, using)
        if found is MISSING:
            raise plan.does_not_exist(_not_found(plan, "pk", pk))
        if found is not None:
            return found  # type: ignore[no-any-return]
    rows: dict[Any, models.Model] = _resolve_rows(
        plan, [Miss(pk, key, data or b"")], generation, using
    )
    if pk not in rows:
        raise plan.does_not_exist(_not_found(plan, "pk", pk))
    return rows[pk]


def get_many(plan: ModelPlan, pks: Iterable[Any]) -> dict[Any, models.Model]:
    """``{pk: instance}`` for the rows that exist, in one Redis round trip when all hit."""
    clean = list(dict.fromkeys(plan.clean_pk(pk) for pk in pks))
    using = router.db_for_read(plan.model)
    result: dict[Any, models.Model] = {}
    bypass = [pk for pk in clean if is_touched(plan.keys.label, pk)]
    if bypass:
        result.update(_db_rows(plan, bypass, using))
        clean = [pk for pk in clean if pk not in set(bypass)]
    if not clean:
        return result
    keys = [plan.keys.row(pk) for pk in clean]
    try:
        generation, *values = _mget([plan.keys.generation, *keys])
    except Unavailable:
        result.update(_db_rows(plan, clean, using))
        return result
    generation = generation or b""
    misses = []
    for pk, key, data in zip(clean, keys, values, strict=True):
        found = decode_row(plan, data, generation, using) if data is not None else None
        if found is None:
            misses.append(Miss(pk, key, data or b""))
        elif found is not MISSING:
            result[pk] = found
    if misses:
        result.update(_resolve_rows(plan, misses, generation, using))
    return result


def get_by_lookup(plan: ModelPlan, name: str, value: Any) -> models.Model:
    """The row whose unique field ``name`` equals ``value``: lookup key → pk → row."""
    field = plan.lookup_fields[name]
    value = plan.clean(field, value)
    using = router.db_for_read(plan.model)
    if is_model_touched(plan.keys.label):
        return _db_lookup(plan, name, value, using)
    key = plan.keys.lookup(name, value)
    try:
        generation, data = _mget([plan.keys.generation, key])
    except Unavailable:
        return _db_lookup(plan, name, value, using)
    generation = generation or b""
    pk = _decode_pointer(plan, data, generation) if data is not None else None
    if pk is None:
        pks = _resolve_lookup(plan, name, [Miss(value, key, data or b"")], generation, using)
        pk = pks.get(value, MISSING)
    if pk is MISSING:
        raise plan.does_not_exist(_not_found(plan, name, value))
    try:
        instance = get(plan, pk)
    except plan.does_not_exist:
        instance = None
    # The pointer is checked against the row, so a renamed or deleted row never resolves
    # by its old value; no extra query on save is needed to find the old value.
    if instance is None or getattr(instance, field.attname) != value:
        _forget(key)
        return _db_lookup(plan, name, value, using)
    return instance


def _decode_pointer(plan: ModelPlan, data: bytes, generation: bytes) -> Any:
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.generation != generation:
        return None
    if payload.kind == POINTER:
        try:
            return plan.clean_pk(payload.values[0])
        except (ValueError, IndexError):
            return None
    return MISSING if payload.kind == ABSENT else None


def warm(plan: ModelPlan, pks: Iterable[Any]) -> None:
    """Fill rows from the database under leases, without waiting for other holders."""
    using = router.db_for_read(plan.model)
    if not can_fill(using):
        return
    try:
        generation = _mget([plan.keys.generation])[0] or b""
    except Unavailable:
        return
    misses = [Miss(pk, plan.keys.row(pk), b"") for pk in pks]
    _resolve_rows(plan, misses, generation, using, wait=False)


def _resolve_rows(
    plan: ModelPlan, misses: list[Miss], generation: bytes, using: str, wait: bool = True
) -> Any:
    def decode(data: bytes) -> Any:
        return decode_row(plan, data, generation, using)

    def load(pks: list[Any]) -> Loaded:
        start = time.perf_counter()
        rows = _db_rows(plan, pks, using)
        spent_ms = int((time.perf_counter() - start) * 1000)
        loaded: Loaded = {}
        for pk in pks:
            row = rows.get(pk, MISSING)
            loaded[pk] = (row, _row_payload(plan, row, generation, spent_ms))
        return loaded

    return leased(plan, misses, decode, load, using, wait)


def _resolve_lookup(
    plan: ModelPlan, name: str, misses: list[Miss], generation: bytes, using: str
) -> Any:
    codec = plan.codec

    def decode(data: bytes) -> Any:
        return _decode_pointer(plan, data, generation)

    def load(values: list[Any]) -> Loaded:
        query = plan.model._base_manager.using(using).filter(**{f"{name}__in": values})
        pks = dict(query.values_list(name, "pk"))
        loaded: Loaded = {}
        for value in values:
            pk = pks.get(value, MISSING)
            payload = (
                codec.dump_marker(ABSENT, generation)
                if pk is MISSING
                else codec.dump_marker(POINTER, generation, [str(pk)])
            )
            loaded[value] = (pk, payload)
        return loaded

    return leased(plan, misses, decode, load, using)


def _row_payload(plan: ModelPlan, row: Any, generation: bytes, spent_ms: int) -> bytes | None:
    if row is MISSING:
        return plan.codec.dump_marker(ABSENT, generation)
    try:
        return plan.codec.dump_row(row, generation, spent_ms)
    except (TypeError, ValueError, OverflowError):
        return None  # a value msgpack cannot hold: serve it, do not cache it


@fail_open
def _delete(keys: list[str]) -> None:
    connection().delete(*keys)


def _forget(key: str) -> None:
    with contextlib.suppress(Unavailable):
        _delete([key])


def _db_rows(plan: ModelPlan, pks: list[Any], using: str) -> dict[Any, models.Model]:
    return {obj.pk: obj for obj in plan.model._base_manager.using(using).filter(pk__in=pks)}


def _db_get(plan: ModelPlan, pk: Any, using: str) -> models.Model:
    return plan.model._base_manager.using(using).get(pk=pk)


def _db_lookup(plan: ModelPlan, name: str, value: Any, using: str) -> models.Model:
    return plan.model._base_manager.using(using).get(**{name: value})


def _not_found(plan: ModelPlan, name: str, value: Any) -> str:
    return f"{plan.model._meta.object_name} matching {name}={value!r} does not exist."
