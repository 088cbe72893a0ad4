"""Write-behind flush: claim a stripe's batch, apply it once in one transaction, acknowledge.

Exactly-once comes from three steps (after rgsync's high-water mark and Sentry's buffer,
with their gaps closed): the claim moves pending deltas aside atomically (Lua); the
database transaction inserts the batch id (unique) before it applies the deltas; the
acknowledgement drops the batch from Redis only after the commit. A flusher killed
anywhere leaves a claim that the next flush reclaims after ``RECLAIM_AFTER`` seconds;
if the batch id is already recorded, it is acknowledged without being applied again.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
import uuid
from collections import defaultdict
from typing import Any, cast

from django.db import IntegrityError, connections, models, router, transaction
from django.db.models import Case, F, When
from django.db.models.functions import Greatest
from django.utils import timezone

from . import transactions
from .client import connection, pending, scripts
from .conf import conf
from .options import cached_models
from .plan import ModelPlan, plan_for

__all__ = ["BatchResult", "flush_all", "flush_model"]

#: Rows per UPDATE statement.
CHUNK = 10_000


@dataclasses.dataclass
class BatchResult:
    model: str
    stripe: int
    batch_id: str
    rows: int = 0
    increments: int = 0
    dead_letters: int = 0
    reclaimed: bool = False
    duplicate: bool = False  # already recorded: acknowledged without applying again
    duration_ms: float = 0.0


def counter_models() -> list[type[models.Model]]:
    return [m for m in cached_models() if plan_for(m).options.counters]


def flush_all() -> list[BatchResult]:
    """Flush every stripe of every model with counters; safe to run concurrently."""
    results = [result for model in counter_models() for result in flush_model(model)]
    forget_old_batches()
    return results


#: Batch records are needed only until no claim of theirs can be reclaimed any more.
KEEP_BATCHES = datetime.timedelta(days=1)
_last_cleanup = 0.0


def forget_old_batches() -> None:
    """Delete batch records older than a day (once an hour per process); the batches
    that have dead letters stay, with them, until the letters are deleted."""
    global _last_cleanup
    if time.monotonic() - _last_cleanup < 3600:
        return
    from .models import CounterBatch

    _last_cleanup = time.monotonic()
    cutoff = timezone.now() - KEEP_BATCHES
    CounterBatch.objects.filter(applied_at__lt=cutoff, dead_letters=0).delete()


def flush_model(model: type[models.Model]) -> list[BatchResult]:
    plan = plan_for(model)
    transactions.sweep()  # a rolled-back test's increments are not flushed
    pending.replay()  # settle increments whose reply was lost before reading any batch
    results = []
    for index in range(plan.stripes):
        # A reclaimed batch may have increments queued behind it: take those too.
        for _ in range(3):
            result = flush_stripe(plan, index)
            if result is None:
                break
            results.append(result)
            if not result.reclaimed:
                break
    return results


def flush_stripe(plan: ModelPlan, index: int) -> BatchResult | None:
    claimed = claim(plan, index)
    if claimed is None:
        return None
    result, deltas = claimed
    apply(plan, result, deltas)
    acknowledge(plan, index, result.batch_id)
    return result


def claim(plan: ModelPlan, index: int) -> tuple[BatchResult, dict[str, int]] | None:
    """Take the stripe's pending deltas (or a dead flusher's batch) as one batch."""
    keys = plan.keys.stripe(index)
    reclaim_ms = int(float(conf.WRITE_BEHIND["RECLAIM_AFTER"]) * 1000)
    args = (uuid.uuid4().hex, int(time.time() * 1000), reclaim_ms)
    out = scripts.claim(connection(), keys[:4], args)
    if out[0] == 0:
        return None
    items = out[2:]
    deltas = {items[i].decode(): int(items[i + 1]) for i in range(0, len(items), 2)}
    result = BatchResult(plan.keys.label, index, out[1].decode(), reclaimed=out[0] == 2)
    return result, deltas


def acknowledge(plan: ModelPlan, index: int, batch_id: str) -> None:
    keys = plan.keys.stripe(index)
    scripts.ack(connection(), (keys.claimed, keys.claim, keys.version), (batch_id,))


def apply(plan: ModelPlan, result: BatchResult, deltas: dict[str, int]) -> None:
    """Apply a batch in one transaction that first records its id."""
    from .models import CounterBatch, DeadLetter

    start = time.perf_counter()
    using = router.db_for_write(plan.model)
    rows = _by_row(plan, deltas)
    with transaction.atomic(using=using):
        try:
            with transaction.atomic(using=using):
                batch = CounterBatch.objects.using(using).create(
                    id=result.batch_id, model=result.model, stripe=result.stripe
                )
        except IntegrityError:
            result.duplicate = True  # a flusher died after its commit: acknowledge only
            return
        existing = _lock_existing(plan, list(rows), using)
        dead = [pk for pk in rows if pk not in existing]
        DeadLetter.objects.using(using).bulk_create(
            DeadLetter(batch=batch, model=result.model, pk_value=str(pk), field=f, delta=d)
            for pk in dead
            for f, d in rows[pk].items()
        )
        live = {pk: rows[pk] for pk in existing if pk in rows}
        _update(plan, live, using)
        result.rows, result.dead_letters = len(live), len(dead)
        result.increments = sum(abs(d) for r in rows.values() for d in r.values())
        result.duration_ms = (time.perf_counter() - start) * 1000
        CounterBatch.objects.using(using).filter(id=batch.id).update(
            rows=result.rows,
            increments=result.increments,
            dead_letters=result.dead_letters,
            duration_ms=result.duration_ms,
        )


def _by_row(plan: ModelPlan, deltas: dict[str, int]) -> dict[Any, dict[str, int]]:
    rows: dict[Any, dict[str, int]] = defaultdict(dict)
    for member, delta in deltas.items():
        field, _, pk = member.partition(":")
        if delta:
            rows[plan.clean_pk(pk)][field] = delta
    return rows


def _lock_existing(plan: ModelPlan, pks: list[Any], using: str) -> set[Any]:
    manager = plan.rows(using)
    found: set[Any] = set()
    for start in range(0, len(pks), CHUNK):
        chunk = pks[start : start + CHUNK]
        found.update(manager.select_for_update().filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def _update(plan: ModelPlan, rows: dict[Any, dict[str, int]], using: str) -> None:
    items = list(rows.items())
    for start in range(0, len(items), CHUNK):
        chunk = items[start : start + CHUNK]
        if connections[using].vendor == "postgresql":
            _update_postgresql(plan, chunk, using)
        else:
            _update_portable(plan, dict(chunk), using)


def _update_postgresql(
    plan: ModelPlan, chunk: list[tuple[Any, dict[str, int]]], using: str
) -> None:
    """One set-based UPDATE for every counter of every row: ``UPDATE … FROM unnest(…)``."""
    conn = connections[using]
    qn = conn.ops.quote_name
    meta = plan.model._meta
    fields = plan.options.counters
    table = qn(meta.db_table)
    pk_type = plan.pk_field.db_type(conn)
    sets = []
    for i, name in enumerate(fields):
        column = qn(str(getattr(meta.get_field(name), "column", name)))
        added = f"{table}.{column} + cs_v.cs_d{i}"
        sets.append(f"{column} = {f'GREATEST({added}, 0)' if plan.is_positive(name) else added}")
    arrays = ", ".join([f"%s::{pk_type}[]"] + ["%s::bigint[]"] * len(fields))
    columns = ", ".join(["cs_pk"] + [f"cs_d{i}" for i in range(len(fields))])
    sql = (
        f"UPDATE {table} SET {', '.join(sets)} FROM unnest({arrays}) AS cs_v({columns}) "
        f"WHERE {table}.{qn(str(plan.pk_field.column))} = cs_v.cs_pk"
    )
    params = [[pk for pk, _ in chunk]]
    params += [[deltas.get(name, 0) for _, deltas in chunk] for name in fields]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)


def _update_portable(plan: ModelPlan, rows: dict[Any, dict[str, int]], using: str) -> None:
    """Elsewhere: one UPDATE per counter, with a CASE over the rows of the chunk."""
    manager = plan.rows(using)
    for name in plan.options.counters:
        whens = [When(pk=pk, then=F(name) + d[name]) for pk, d in rows.items() if d.get(name)]
        if not whens:
            continue
        field = cast("models.Field[Any, Any]", plan.model._meta.get_field(name))
        value: Any = Case(*whens, default=F(name), output_field=field)
        if plan.is_positive(name):
            value = Greatest(value, 0, output_field=field)
        manager.filter(pk__in=[pk for pk, d in rows.items() if d.get(name)]).update(**{name: value})
