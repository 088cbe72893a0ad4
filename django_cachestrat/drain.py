"""Write-behind drain: claim a stripe's batch, apply it once in one transaction, acknowledge.

Exactly-once comes from three steps (after rgsync's high-water mark and Sentry's buffer,
with their gaps closed): the claim moves pending deltas aside atomically (Lua); the
database transaction inserts the batch id (unique) before it applies the deltas; the
acknowledgement drops the batch from Redis only after the commit. A drainer killed
anywhere leaves a claim that the next drain reclaims after ``RECLAIM_AFTER`` seconds;
if the batch id is already recorded, it is acknowledged without being applied again.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import time
import uuid
from collections import defaultdict
from typing import Any, cast

from django.core.exceptions import FieldDoesNotExist
from django.db import (
    DEFAULT_DB_ALIAS,
    DataError,
    IntegrityError,
    connections,
    models,
    router,
    transaction,
)
from django.db.models import Case, F, When
from django.db.models.functions import Greatest
from django.utils import timezone

from . import tracing
from .client import REDIS_ERRORS, connection
from .conf import conf, primary_aliases
from .keys import member_parts
from .options import cached_models
from .pending import pending
from .plan import ModelPlan, plan_for
from .scripts import scripts

__all__ = ["BatchResult", "DrainError", "StripeError", "drain_all", "drain_model"]

logger = logging.getLogger("django_cachestrat")

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
    database: str = DEFAULT_DB_ALIAS  # where the batch is applied (and recorded)


def counter_models() -> list[type[models.Model]]:
    return [m for m in cached_models() if plan_for(m).options.counters]


@dataclasses.dataclass
class StripeError:
    """A stripe (or, with ``stripe=None``, a whole model) that could not be drained."""

    model: str
    stripe: int | None
    error: Exception

    def __str__(self) -> str:
        where = self.model if self.stripe is None else f"{self.model} stripe {self.stripe}"
        return f"{where}: {type(self.error).__name__}: {self.error}"


class DrainError(Exception):
    """Some stripes could not be drained. Every other stripe and model was: ``results``
    holds their batches, ``errors`` one entry per failure. A batch that failed stays
    claimed and is retried once its claim can be reclaimed."""

    def __init__(self, errors: list[StripeError], results: list[BatchResult]) -> None:
        self.errors = errors
        self.results = results
        listed = "; ".join(str(e).strip() for e in errors)
        super().__init__(f"{len(errors)} write-behind drain(s) failed: {listed}")


def drain_all() -> list[BatchResult]:
    """Drain every stripe of every model with counters; safe to run concurrently.

    A failure never stops the others: every model is drained, then :class:`DrainError`
    reports every failure."""
    results: list[BatchResult] = []
    errors: list[StripeError] = []
    for model in counter_models():
        try:
            results += drain_model(model)
        except DrainError as exc:
            results += exc.results
            errors += exc.errors
    if errors:
        raise DrainError(errors, results)
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


def drain_model(model: type[models.Model]) -> list[BatchResult]:
    """Drain every stripe of one model; a stripe that fails does not stop the others
    (:class:`DrainError` at the end reports it), except when Redis fails: then so would
    every other stripe."""
    plan = plan_for(model)
    label = plan.keys.label
    results: list[BatchResult] = []
    errors: list[StripeError] = []
    try:
        pending.replay()  # settle increments whose reply was lost before reading any batch
    except REDIS_ERRORS as exc:
        _failed(errors, StripeError(label, None, exc))
        raise DrainError(errors, results) from exc
    for using in primary_aliases():
        if not _drain_database(plan, using, results, errors):
            break  # Redis failed: so would every other stripe
    if errors:
        raise DrainError(errors, results)
    return results


def _drain_database(
    plan: ModelPlan, using: str, results: list[BatchResult], errors: list[StripeError]
) -> bool:
    """Drain one database's stripes of a model; False if Redis failed."""
    label = plan.keys.label
    for index in range(plan.stripes):
        try:
            # A reclaimed batch may have increments queued behind it: take those too.
            for _ in range(3):
                result = drain_stripe(plan, index, using)
                if result is None:
                    break
                results.append(result)
                if not result.reclaimed:
                    break
        except REDIS_ERRORS as exc:
            _failed(errors, StripeError(label, index, exc))
            return False
        except Exception as exc:  # this stripe's batch stays claimed, retried later
            _failed(errors, StripeError(label, index, exc))
    return True


def _failed(errors: list[StripeError], error: StripeError) -> None:
    logger.error("Write-behind drain failed: %s", error, exc_info=error.error)
    errors.append(error)


def drain_stripe(plan: ModelPlan, index: int, using: str | None = None) -> BatchResult | None:
    """Drain one stripe of the database ``using`` (default: the router's for writes)."""
    claimed = claim(plan, index, using)
    if claimed is None:
        return None
    result, deltas = claimed
    with tracing.span("flush", plan.keys.label, {"cachestrat.stripe": index}) as span:
        apply(plan, result, deltas)
        acknowledge(plan, index, result.batch_id, result.database)
        tracing.annotate(span, {"cachestrat.increments": result.increments})
    if not result.duplicate:  # applied by an earlier attempt, and counted there
        plan.stats.batches += 1
        plan.stats.flushed += result.increments
        plan.stats.dead_letters += result.dead_letters
    return result


def claim(
    plan: ModelPlan, index: int, using: str | None = None
) -> tuple[BatchResult, dict[str, int]] | None:
    """Take the stripe's pending deltas (or a dead drainer's batch) as one batch."""
    using = using or router.db_for_write(plan.model)
    keys = plan.space(using).stripe(index)
    reclaim_ms = int(float(conf.WRITE_BEHIND["RECLAIM_AFTER"]) * 1000)
    args = (uuid.uuid4().hex, int(time.time() * 1000), reclaim_ms)
    out = scripts.claim(connection(), keys[:4], args)
    if out[0] == 0:
        return None
    items = out[2:]
    deltas = {items[i].decode(): int(items[i + 1]) for i in range(0, len(items), 2)}
    result = BatchResult(
        plan.keys.label, index, out[1].decode(), reclaimed=out[0] == 2, database=using
    )
    return result, deltas


def acknowledge(plan: ModelPlan, index: int, batch_id: str, using: str | None = None) -> None:
    keys = plan.space(using or router.db_for_write(plan.model)).stripe(index)
    scripts.ack(connection(), (keys.claimed, keys.claim, keys.version), (batch_id,))


#: Why an increment became a dead letter.
NO_ROW = "no such row"


def apply(plan: ModelPlan, result: BatchResult, deltas: dict[str, int]) -> None:
    """Apply a batch in one transaction that first records its id.

    An increment that cannot be applied (its row is gone, its field is no counter any
    more, the database refuses it) is kept as a dead letter with its reason, and the
    others are applied.
    """
    start = time.perf_counter()
    using = result.database
    rows, letters = _by_row(plan, deltas)
    result.increments = sum(abs(d) for d in deltas.values())
    try:
        _apply(plan, result, rows, letters, using, start, isolate=False)
    except (DataError, IntegrityError):
        # A row the database refuses (out of its column's range, a CHECK constraint):
        # the whole transaction was rolled back; apply again, setting the refused aside.
        _apply(plan, result, rows, letters, using, start, isolate=True)


Rows = dict[Any, dict[str, int]]
Letter = tuple[str, str, int, str]  # pk text, field, delta, reason


def _apply(
    plan: ModelPlan,
    result: BatchResult,
    rows: Rows,
    letters: list[Letter],
    using: str,
    start: float,
    *,
    isolate: bool,
) -> None:
    from .models import CounterBatch, DeadLetter

    with transaction.atomic(using=using):
        try:
            with transaction.atomic(using=using):
                batch = CounterBatch.objects.using(using).create(
                    id=result.batch_id, model=result.model, stripe=result.stripe
                )
        except IntegrityError:
            result.duplicate = True  # a drainer died after its commit: acknowledge only
            return
        existing = _lock_existing(plan, list(rows), using)
        dead = list(letters)
        dead += [
            (str(pk), f, d, NO_ROW)
            for pk in rows
            if pk not in existing
            for f, d in rows[pk].items()
        ]
        live = {pk: dict(rows[pk]) for pk in existing if pk in rows}
        if isolate:
            for pk, refused in _update_isolated(plan, live, using).items():
                dead += [(str(pk), f, live[pk].pop(f), reason) for f, reason in refused.items()]
            live = {pk: deltas for pk, deltas in live.items() if deltas}
        else:
            _update(plan, live, using)
        DeadLetter.objects.using(using).bulk_create(
            DeadLetter(
                batch=batch, model=result.model, pk_value=pk, field=f, delta=d, reason=why[:255]
            )
            for pk, f, d, why in dead
        )
        result.rows, result.dead_letters = len(live), len(dead)
        result.duration_ms = (time.perf_counter() - start) * 1000
        CounterBatch.objects.using(using).filter(id=batch.id).update(
            rows=result.rows,
            increments=result.increments,
            dead_letters=result.dead_letters,
            duration_ms=result.duration_ms,
        )


def _by_row(plan: ModelPlan, deltas: dict[str, int]) -> tuple[Rows, list[Letter]]:
    """The deltas by row, and those that name no row or counter any more."""
    rows: Rows = defaultdict(dict)
    letters: list[Letter] = []
    for member, delta in deltas.items():
        field, text = member_parts(member)
        if not delta:
            continue
        problem = _field_problem(plan, field)
        try:
            pk = plan.clean_pk(text)
        except ValueError as exc:
            problem = problem or str(exc)
        if problem:
            letters.append((text, field, delta, problem))
        else:
            rows[pk][field] = delta
    return rows, letters


def _field_problem(plan: ModelPlan, name: str) -> str | None:
    try:
        field = plan.model._meta.get_field(name)
    except FieldDoesNotExist:
        return f"{plan.model._meta.label} has no field {name!r}"
    if not isinstance(field, models.IntegerField) or field.primary_key:
        return f"{plan.model._meta.label}.{name} is not an integer field"
    return None


def _update_isolated(plan: ModelPlan, rows: Rows, using: str) -> dict[Any, dict[str, str]]:
    """Apply rows in savepoints, halving a part the database refuses until the refused
    row, then counter, is found; returns ``{pk: {field: reason}}`` of the refused."""
    refused: dict[Any, dict[str, str]] = {}

    def attempt(part: Rows) -> None:
        try:
            with transaction.atomic(using=using):
                _update(plan, part, using)
        except (DataError, IntegrityError) as exc:
            items = list(part.items())
            if len(items) > 1:
                attempt(dict(items[: len(items) // 2]))
                attempt(dict(items[len(items) // 2 :]))
                return
            ((pk, deltas),) = items
            if len(deltas) > 1:
                for field, delta in deltas.items():
                    attempt({pk: {field: delta}})
                return
            reason = f"refused by the database: {str(exc).splitlines()[0]}"
            refused.setdefault(pk, {}).update(dict.fromkeys(deltas, reason))

    if rows:
        attempt(rows)
    return refused


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
    """One set-based UPDATE per table for every counter of every row: ``UPDATE … FROM
    unnest(…)`` (a counter inherited from a multi-table parent lives in the parent's table,
    under the same pk value)."""
    tables: dict[type[models.Model], list[models.Field[Any, Any]]] = defaultdict(list)
    for name in sorted({name for _, deltas in chunk for name in deltas}):
        field = cast("models.Field[Any, Any]", plan.model._meta.get_field(name))
        owner = cast("type[models.Model]", field.model._meta.concrete_model)
        tables[owner].append(field)
    for owner, fields in tables.items():
        _update_table(plan, owner, fields, chunk, using)


def _update_table(
    plan: ModelPlan,
    owner: type[models.Model],
    fields: list[models.Field[Any, Any]],
    chunk: list[tuple[Any, dict[str, int]]],
    using: str,
) -> None:
    conn = connections[using]
    qn = conn.ops.quote_name
    table = qn(owner._meta.db_table)
    pk = owner._meta.pk
    assert pk is not None
    sets = []
    for i, field in enumerate(fields):
        column = qn(str(field.column))
        added = f"{table}.{column} + cs_v.cs_d{i}"
        positive = plan.is_positive(field.name)
        sets.append(f"{column} = {f'GREATEST({added}, 0)' if positive else added}")
    arrays = ", ".join([f"%s::{pk.db_type(conn)}[]"] + ["%s::bigint[]"] * len(fields))
    columns = ", ".join(["cs_pk"] + [f"cs_d{i}" for i in range(len(fields))])
    sql = (
        f"UPDATE {table} SET {', '.join(sets)} FROM unnest({arrays}) AS cs_v({columns}) "
        f"WHERE {table}.{qn(str(pk.column))} = cs_v.cs_pk"
    )
    params: list[Any] = [[pk_value for pk_value, deltas in chunk if _any(deltas, fields)]]
    params += [
        [deltas.get(f.name, 0) for _, deltas in chunk if _any(deltas, fields)] for f in fields
    ]
    with conn.cursor() as cursor:
        cursor.execute(sql, params)


def _any(deltas: dict[str, int], fields: list[models.Field[Any, Any]]) -> bool:
    return any(f.name in deltas for f in fields)


def _update_portable(plan: ModelPlan, rows: dict[Any, dict[str, int]], using: str) -> None:
    """Elsewhere: one UPDATE per counter, with a CASE over the rows of the chunk."""
    manager = plan.rows(using)
    for name in sorted({name for deltas in rows.values() for name in deltas}):
        whens = [When(pk=pk, then=F(name) + d[name]) for pk, d in rows.items() if d.get(name)]
        if not whens:
            continue
        field = cast("models.Field[Any, Any]", plan.model._meta.get_field(name))
        value: Any = Case(*whens, default=F(name), output_field=field)
        if plan.is_positive(name):
            value = Greatest(value, 0, output_field=field)
        manager.filter(pk__in=[pk for pk, d in rows.items() if d.get(name)]).update(**{name: value})
