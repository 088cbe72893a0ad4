"""Cache-aside reads: a lean hit path, and leased fills so no stale row is ever stored."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from django.db import models, router

from .client import Unavailable, connection, fail_open, scripts
from .plan import ModelPlan
from .serializers import ABSENT, POINTER, ROW, CorruptPayload
from .transactions import can_fill, is_model_touched, is_touched

__all__ = ["get", "get_by_lookup", "get_many"]

#: A decoded "this row does not exist" marker (a miss sentinel, never None).
MISSING: Any = object()


class _Miss(NamedTuple):
    ident: Any  # the pk, or the lookup value
    key: str
    discard: bytes  # the unusable value seen under this key, removed when taking the lease


# What a leased load returns per ident: the value for the caller, and the payload to store
# (None: do not store, give the lease back).
Loaded = dict[Any, tuple[Any, bytes | None]]


@fail_open
def _mget(keys: list[str]) -> list[bytes | None]:
    return connection().mget(keys)  # type: ignore[return-value]


@fail_open
def _leases(plan: ModelPlan, misses: Sequence[_Miss]) -> list[Any]:
    token = os.urandom(8).hex()
    calls = [
        (scripts.lease, (m.key, plan.keys.lease(m.key)), (token, plan.lease_ms, m.discard))
        for m in misses
    ]
    outcomes = scripts.run_many(connection(), calls)
    return [(token if out == 1 else out) for out in outcomes]


@fail_open
def _store(plan: ModelPlan, stores: Sequence[tuple[_Miss, str, bytes | None, float]]) -> None:
    calls = []
    for miss, token, payload, timeout in stores:
        lease = plan.keys.lease(miss.key)
        if payload is None:
            calls.append((scripts.release, (lease,), (token,)))
        else:
            calls.append((scripts.fill, (miss.key, lease), (token, payload, plan.ttl_ms(timeout))))
    scripts.run_many(connection(), calls)


def decode_row(plan: ModelPlan, data: bytes, generation: bytes, using: str) -> Any:
    """A model instance, :data:`MISSING`, or None when the payload is unusable."""
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.generation != generation:
        return None
    if payload.kind == ROW:
        return plan.model.from_db(using, None, payload.values)
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
            raise plan.model.DoesNotExist(_not_found(plan, "pk", pk))
        if found is not None:
            return found  # type: ignore[no-any-return]
    rows = _resolve_rows(plan, [_Miss(pk, key, data or b"")], generation, using)
    if pk not in rows:
        raise plan.model.DoesNotExist(_not_found(plan, "pk", pk))
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
            misses.append(_Miss(pk, key, data or b""))
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
        pks = _resolve_lookup(plan, name, [_Miss(value, key, data or b"")], generation, using)
        pk = pks.get(value, MISSING)
    if pk is MISSING:
        raise plan.model.DoesNotExist(_not_found(plan, name, value))
    try:
        instance = get(plan, pk)
    except plan.model.DoesNotExist:
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
    misses = [_Miss(pk, plan.keys.row(pk), b"") for pk in pks]
    _resolve_rows(plan, misses, generation, using, wait=False)


def _resolve_rows(
    plan: ModelPlan, misses: list[_Miss], generation: bytes, using: str, wait: bool = True
) -> Any:
    def decode(data: bytes) -> Any:
        return decode_row(plan, data, generation, using)

    def load(pks: list[Any]) -> Loaded:
        start = time.perf_counter()
        rows = _db_rows(plan, pks, using)
        spent_ms = int((time.perf_counter() - start) * 1000)
        loaded: Loaded = {}
        for pk in pks:
            row = rows.get(pk)
            loaded[pk] = (row, _row_payload(plan, row, generation, spent_ms))
        return loaded

    return _leased(plan, misses, decode, load, using, wait)


def _resolve_lookup(
    plan: ModelPlan, name: str, misses: list[_Miss], generation: bytes, using: str
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

    return _leased(plan, misses, decode, load, using)


def _leased(
    plan: ModelPlan,
    misses: list[_Miss],
    decode: Callable[[bytes], Any],
    load: Callable[[list[Any]], Loaded],
    using: str,
    wait: bool = True,
) -> dict[Any, Any]:
    """Resolve misses under leases (Nishtala et al., NSDI 2013, §3.2).

    The holder of a key's lease reads the database and fills; the others wait, with a
    bounded back-off, for that fill, then read the database without filling. Absent rows
    are left out of the result.
    """
    found: dict[Any, Any] = {}
    if not can_fill(using):
        misses_left = misses
    else:
        misses_left = _lease_rounds(plan, misses, decode, load, found, wait)
    if misses_left and wait:
        loaded = load([m.ident for m in misses_left])
        found.update((k, v) for k, (v, _) in loaded.items())
    return {k: v for k, v in found.items() if v is not MISSING}


def _lease_rounds(
    plan: ModelPlan,
    misses: list[_Miss],
    decode: Callable[[bytes], Any],
    load: Callable[[list[Any]], Loaded],
    found: dict[Any, Any],
    wait: bool,
) -> list[_Miss]:
    deadline = time.monotonic() + (plan.lease_wait if wait else 0.0)
    delay = 0.002
    while misses:
        try:
            outcomes = _leases(plan, misses)
        except Unavailable:
            return misses
        mine: list[tuple[_Miss, str]] = []
        waiting: list[_Miss] = []
        for miss, out in zip(misses, outcomes, strict=True):
            if isinstance(out, str):
                mine.append((miss, out))
            elif isinstance(out, bytes) and (value := decode(out)) is not None:
                found[miss.ident] = value
            else:
                waiting.append(miss._replace(discard=out if isinstance(out, bytes) else b""))
        if mine:
            _load_and_fill(plan, mine, load, found)
        misses = waiting
        remaining = deadline - time.monotonic()
        if not misses or remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return misses


def _load_and_fill(
    plan: ModelPlan,
    mine: list[tuple[_Miss, str]],
    load: Callable[[list[Any]], Loaded],
    found: dict[Any, Any],
) -> None:
    try:
        loaded = load([m.ident for m, _ in mine])
    except BaseException:
        _give_back(plan, [(m, token, None, 0.0) for m, token in mine])
        raise
    stores = []
    for miss, token in mine:
        value, payload = loaded[miss.ident]
        found[miss.ident] = value
        timeout = plan.negative_timeout if value is MISSING else plan.timeout
        stores.append((miss, token, payload if timeout > 0 else None, timeout))
    _give_back(plan, stores)


def _give_back(plan: ModelPlan, stores: list[tuple[_Miss, str, bytes | None, float]]) -> None:
    try:
        _store(plan, stores)
    except Unavailable:
        pass  # the leases expire on their own


def _row_payload(plan: ModelPlan, row: Any, generation: bytes, spent_ms: int) -> bytes | None:
    if row is None:
        return plan.codec.dump_marker(ABSENT, generation)
    try:
        return plan.codec.dump_row(row, generation, spent_ms)
    except (TypeError, ValueError, OverflowError):
        return None  # a value msgpack cannot hold: serve it, do not cache it


@fail_open
def _delete(keys: list[str]) -> None:
    connection().delete(*keys)


def _forget(key: str) -> None:
    try:
        _delete([key])
    except Unavailable:
        pass


def _db_rows(plan: ModelPlan, pks: list[Any], using: str) -> dict[Any, models.Model]:
    return {obj.pk: obj for obj in plan.model._base_manager.using(using).filter(pk__in=pks)}


def _db_get(plan: ModelPlan, pk: Any, using: str) -> models.Model:
    return plan.model._base_manager.using(using).get(pk=pk)


def _db_lookup(plan: ModelPlan, name: str, value: Any, using: str) -> models.Model:
    return plan.model._base_manager.using(using).get(**{name: value})


def _not_found(plan: ModelPlan, name: str, value: Any) -> str:
    return f"{plan.model._meta.object_name} matching {name}={value!r} does not exist."
