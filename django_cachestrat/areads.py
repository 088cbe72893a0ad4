"""Async reads: hits served through ``redis.asyncio`` on the event loop, the rest in a thread.

A hit is one MGET on the loop, the same keys, generations and payloads as the sync path,
with no thread hop. Anything else (a miss, a cached absence, a stale or corrupt value,
write-behind counters, and the refresh of a hit due for one) runs the sync path through
``sync_to_async``, so leases, fills, replica rules and transactions follow one protocol,
written once.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync, sync_to_async
from django.db import models, router

from . import lookups, reads, requestlog, signals
from .aclient import Deferred, amget
from .breaker import Unavailable
from .plan import ModelPlan
from .reads import Generations, _not_found, _refresh, is_refresh_due, row_tag
from .serializers import ABSENT, POINTER, ROW, CorruptPayload
from .transactions import is_model_touched, is_touched, scope_tag

__all__ = ["aget", "aget_by_lookup", "aget_many"]

R = TypeVar("R")


def _in_thread(func: Callable[..., R], *args: Any) -> Any:
    return sync_to_async(func)(*args)  # thread-sensitive, as Django's own async ORM


#: The last answer of :func:`_under_sync_caller` in this context, with what it holds for:
#: the asyncio task (weakly: the task's own context holds this), and asgiref's
#: thread-sensitive context (which may hide the caller).
_answered: contextvars.ContextVar[tuple[weakref.ref[asyncio.Task[Any]], Any, bool]] = (
    contextvars.ContextVar("django_cachestrat.under_sync_caller")
)


def _under_sync_caller() -> bool:
    """Whether this coroutine runs inside ``async_to_sync``: the sync caller's thread (a
    test case's, or one inside ``atomic()``) may hold a transaction that only code on that
    thread sees, and the sync path runs there.

    NOTE: asgiref's ``Local`` costs microseconds a read, so the answer is kept for the
    running task. A task's context is its own: ``async_to_sync`` runs its coroutine in a
    new task, ``sync_to_async`` puts back on return what it changed, and the one block that
    hides the caller within a task (``ThreadSensitiveContext`` with an executor) also sets
    the thread-sensitive context, which the kept answer names.
    """
    task = asyncio.current_task()
    sensitive = SyncToAsync.thread_sensitive_context.get(None)
    if task is None:  # a coroutine driven by hand has no task to keep the answer for
        return getattr(AsyncToSync.executors, "current", None) is not None
    known = _answered.get(None)
    if known is not None and known[0]() is task and known[1] is sensitive:
        return known[2]
    answer = getattr(AsyncToSync.executors, "current", None) is not None
    _answered.set((weakref.ref(task), sensitive, answer))
    return answer


#: A cached "no such row": whether it is current takes the absence generation, which the
#: sync path reads.
ABSENCE: Any = object()


def _row(plan: ModelPlan, data: bytes, tag: bytes, using: str, due: list[Any]) -> Any:
    """The instance a current row payload holds (``tag``: the row generation's, see
    ``Generations.row``), :data:`ABSENCE`, or None (anything else: the sync path); an
    instance due for an early refresh is also put in ``due``."""
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.kind != ROW or payload.generation != tag:
        return ABSENCE if payload.kind == ABSENT else None
    instance = plan.model.from_db(using, plan.codec.attnames, payload.values)
    if plan.early_refresh and is_refresh_due(payload, plan.early_refresh):
        due.append(instance)
    return instance


def _tag(generation: bytes | None, using: str) -> bytes:
    """``Generations(...).row`` without the object, which only a refresh or the sync path
    needs."""
    return row_tag(generation, scope_tag(using))


def _refreshed(plan: ModelPlan, instance: Any, generations: Generations, using: str) -> Any:
    """XFetch's refresh, by the sync path in a thread: a lease, a read, a fill."""
    return _in_thread(_refresh, plan, instance, generations, using)


def _count(plan: ModelPlan, hits: Sequence[Any], started: float, whole: bool) -> bool:
    """As ``reads._count`` for hits; ``whole``: every row of the read hit. True when the
    ``hit`` signal has receivers, for the caller to await :func:`_send_hit`."""
    stats = plan.stats
    stats.hits += len(hits)
    if whole:
        stats.queries_saved += 1
        stats.hit_times.append((time.perf_counter() - started) * 1e6 / len(hits))
    if (log := requestlog.active()) is not None:  # a debug panel is recording
        log.hits(plan.keys.label, len(hits), whole)
    return bool(signals.hit.receivers)


async def _send_hit(plan: ModelPlan, hits: Sequence[Any]) -> None:
    await signals.hit.asend(plan.model, pks=hits)


async def aget(plan: ModelPlan, pk: Any, using: str | None = None) -> models.Model:
    """``reads.get`` for coroutines: a hit never leaves the event loop."""
    started = time.perf_counter()
    pk = plan.clean_pk(pk)
    if pk is None:  # no row has a NULL pk, and None names no key
        raise plan.does_not_exist(_not_found(plan, "pk", pk))
    using = using or router.db_for_read(plan.model)
    if (
        plan.options.counters
        or plan.pk_inexact
        or _under_sync_caller()
        or is_touched(plan.keys.label, pk)
    ):
        return await _in_thread(reads.get, plan, pk, using)  # type: ignore[no-any-return]
    space = plan.space(using)
    try:
        generation, data = await amget([space.generation, space.row(pk)])
    except Deferred:
        return await _in_thread(reads.get, plan, pk, using)  # type: ignore[no-any-return]
    except Unavailable:
        return await plan.rows(using).aget(pk=pk)
    if data is not None:
        due: list[Any] = []
        found = _row(plan, data, _tag(generation, using), using, due)
        if found is not None and found is not ABSENCE:
            if due:
                generations = Generations(space, generation, scope_tag(using))
                found = await _refreshed(plan, found, generations, using)
            hits = [pk]
            if _count(plan, hits, started, whole=True):
                await _send_hit(plan, hits)
            return found  # type: ignore[no-any-return]
    return await _in_thread(reads.get, plan, pk, using)  # type: ignore[no-any-return]


async def aget_many(
    plan: ModelPlan, pks: Iterable[Any], using: str | None = None
) -> dict[Any, models.Model]:
    """``reads.get_many`` for coroutines: the hits from one MGET on the loop, the rest in a
    thread."""
    started = time.perf_counter()
    clean = [pk for pk in dict.fromkeys(plan.clean_pk(pk) for pk in pks) if pk is not None]
    using = using or router.db_for_read(plan.model)
    label = plan.keys.label
    if not clean:
        return {}
    if (
        plan.options.counters
        or plan.pk_inexact
        or _under_sync_caller()
        or (is_model_touched(label) and any(is_touched(label, pk) for pk in clean))
    ):
        return await _in_thread(reads.get_many, plan, clean, using)  # type: ignore[no-any-return]
    space = plan.space(using)
    try:
        generation, *values = await amget([space.generation, *map(space.row, clean)])
    except Deferred:
        return await _in_thread(reads.get_many, plan, clean, using)  # type: ignore[no-any-return]
    except Unavailable:
        return {obj.pk: obj async for obj in plan.rows(using).filter(pk__in=clean).order_by()}
    tag = _tag(generation, using)
    result: dict[Any, models.Model] = {}
    rest = []
    absences = 0
    due: list[Any] = []
    for pk, data in zip(clean, values, strict=True):
        found = None if data is None else _row(plan, data, tag, using, due)
        if found is None or found is ABSENCE:
            rest.append(pk)
            absences += found is ABSENCE
        else:
            result[pk] = found
    if due:
        generations = Generations(space, generation, scope_tag(using))
        for instance in due:
            result[instance.pk] = await _refreshed(plan, instance, generations, using)
    # A current absence is neither hit nor miss, as on the sync path.
    if result and _count(plan, hits := list(result), started, whole=absences == len(rest)):
        await _send_hit(plan, hits)
    if rest:  # counted, filled and waited for by the sync path
        result.update(await _in_thread(reads.get_many, plan, rest, using))
    return result


def _pointer(plan: ModelPlan, data: bytes, tag: bytes) -> Any:
    """The pk a current lookup pointer names, or None (anything else: the sync path)."""
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.kind != POINTER or payload.generation != tag:
        return None
    try:
        return plan.clean_pk(payload.values[0])
    except (ValueError, IndexError):
        return None


async def aget_by_lookup(
    plan: ModelPlan, name: str, value: Any, using: str | None = None
) -> models.Model:
    """``lookups.get_by_lookup`` for coroutines: lookup key → pk → row, on the loop when
    both hit."""
    field = plan.lookup_fields[name]
    value = plan.clean(field, value)
    using = using or router.db_for_read(plan.model)
    args = (plan, name, value, using)
    if (
        value is None
        or name in plan.inexact_lookups
        or _under_sync_caller()
        or is_model_touched(plan.keys.label)
    ):
        return await _in_thread(lookups.get_by_lookup, *args)  # type: ignore[no-any-return]
    space = plan.space(using)
    try:
        generation, data = await amget([space.generation, space.lookup(name, value)])
    except Deferred:
        return await _in_thread(lookups.get_by_lookup, *args)  # type: ignore[no-any-return]
    except Unavailable:
        return await plan.rows(using).aget(**{name: value})
    pk = None if data is None else _pointer(plan, data, _tag(generation, using))
    if pk is not None:
        try:
            instance = await aget(plan, pk, using)
        except plan.does_not_exist:
            instance = None
        # As the sync path: the pointer is believed only if the row still holds the value.
        if instance is not None and getattr(instance, field.attname) == value:
            if (log := requestlog.active()) is not None:  # the row counted itself
                log.lookup(plan.keys.label, pk, None)
            return instance
    return await _in_thread(lookups.get_by_lookup, *args)  # type: ignore[no-any-return]
