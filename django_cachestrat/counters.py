"""Write-behind counters: increments land in Redis at once; reads add what is pending."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db import connections, router
from django.db.models import Exists, F
from django.db.models.functions import Greatest

from . import counter_saves, transactions
from .client import Unavailable, connection, fail_open, pending, run_many, scripts, topology
from .keys import KeySpace, StripeKeys, key_part
from .plan import ModelPlan
from .topology import ReplicaLag

__all__ = ["incr", "overlay", "version_keys"]

logger = logging.getLogger("django_cachestrat")

#: How often a full stripe may ask for a flush (one caller per period).
TRIGGER_THROTTLE_MS = 1000


#: Redis adds in signed 64-bit integers.
INT64 = (-(2**63), 2**63 - 1)


def _validate(plan: ModelPlan, field: Any, by: Any, using: str) -> None:
    name = f"{plan.model._meta.object_name}.cached.incr()"
    if field not in plan.options.counters:
        declared = ", ".join(plan.options.counters) or "none"
        raise ValueError(
            f"{name}: {field!r} is not a counter of {plan.model._meta.label} "
            f"(declared: {declared}); add it to CacheMeta.counters"
        )
    if type(by) is not int:
        raise TypeError(f"{name}: by must be an int, not {type(by).__name__} ({by!r})")
    low, high = _bounds(plan, field, using)
    if not low <= by <= high:
        kind = type(plan.model._meta.get_field(field)).__name__
        raise ValueError(
            f"{name}: by={by} is out of range for {kind} {field!r} ({low} to {high} on "
            f"database {using!r}): the column could never hold it"
        )


def _bounds(plan: ModelPlan, field: str, using: str) -> tuple[int, int]:
    """How far one increment may move a counter: the column's range (a positive counter
    may go down as far as it can go up)."""
    try:
        return plan.counter_bounds[field, using]
    except KeyError:
        pass
    kind = plan.model._meta.get_field(field).get_internal_type()
    low, high = connections[using].ops.integer_field_range(kind)
    high = INT64[1] if high is None else min(high, INT64[1])
    low = INT64[0] if low is None else max(low, INT64[0])
    bounds = plan.counter_bounds[field, using] = (-high if low >= 0 else low, high)
    return bounds


def incr(plan: ModelPlan, pk: Any, field: str, by: int = 1, using: str | None = None) -> None:
    """Add ``by`` to a counter: one Redis round trip; Celery applies it to the database.

    Inside a transaction the increment waits for the commit, so a rollback drops it.
    """
    using = using or router.db_for_write(plan.model)
    _validate(plan, field, by, using)
    pk = plan.clean_pk(pk)
    state = transactions.state_for(using)
    if state is not None:
        state.add_hook(lambda _: _incr_now(plan, pk, field, by, using))
    else:
        _incr_now(plan, pk, field, by, using)


class _Sequence(threading.local):
    """Each thread numbers its increments, under an id of its own."""

    def __init__(self) -> None:
        self.client = uuid.uuid4().hex[:16]
        self.number = 0
        self.keys: dict[str, str] = {}

    def next(self) -> int:
        self.number += 1
        return self.number

    def restart(self) -> None:
        """Number under a new id from now on: the settle call of a lost reply then meets
        no later number of this thread under the old id, so it can tell whether Redis
        applied the increment (even if another thread sends it late)."""
        self.client = uuid.uuid4().hex[:16]
        self.keys = {}

    def key(self, stripe: StripeKeys) -> str:
        try:
            return self.keys[stripe.pending]
        except KeyError:
            key = self.keys[stripe.pending] = stripe.sequence(self.client)
            return key


_sequence = _Sequence()


def _new_sequence_after_fork() -> None:
    global _sequence
    _sequence = _Sequence()  # a child must never reuse its parent's numbers


os.register_at_fork(after_in_child=_new_sequence_after_fork)


def _incr_now(plan: ModelPlan, pk: Any, field: str, by: int, using: str) -> None:
    if transactions.in_test_scope(using):
        # Inside a test case the increment joins the test's transaction, and goes with its
        # rollback: pending increments in Redis would outlive it, for the next test to see.
        _incr_database(plan, pk, field, by, using)
        return
    space = plan.space(using)  # the database the increment is for: its rows, its stripes
    stripe = space.stripe(space.stripe_of(pk, plan.stripes))
    member = f"{field}:{key_part(pk)}"
    sequence_key = _sequence.key(stripe)
    number = _sequence.next()
    try:
        _, trigger = _incr_redis(stripe, sequence_key, member, by, number, plan.batch_size)
    except (Unavailable, ReplicaLag) as exc:
        _incr_database(plan, pk, field, by, using)  # fail-open: nothing is lost
        # A lost reply, or an increment on a primary that no replica confirmed (a failover
        # may lose it): either way it may be in Redis, and is now in the database.
        if exc.__cause__ is not None or isinstance(exc, ReplicaLag):
            # The command may have reached Redis and run there: settle it once Redis
            # answers (undo it if it ran, else make sure it never will).
            _sequence.restart()
            keys = (stripe.pending, sequence_key, stripe.settled(sequence_key, number))
            pending.add_call((scripts.cancel, keys, (member, by, number, SEQUENCE_KEEP_MS)))
        return
    if trigger:
        _request_flush()


def forget_pending(plans: Iterable[ModelPlan], using: str) -> None:
    """The models' tables were emptied (``TRUNCATE``): their pending increments name rows
    that are gone, and would be added to new rows that reuse the pks."""
    with contextlib.suppress(Unavailable):
        _drop_stripes([p for p in plans if p.options.counters], using)


@fail_open
def _drop_stripes(plans: list[ModelPlan], using: str) -> None:
    if not plans:
        return
    pipe = topology().pipeline()
    for plan in plans:
        space = plan.space(using)
        for index in range(plan.stripes):
            stripe = space.stripe(index)
            # One DEL of one slot: a cluster pipeline refuses delete() of several keys.
            pipe.execute_command("DEL", stripe.pending, stripe.claimed, stripe.claim)
            pipe.incr(stripe.version)  # readers notice the batch that went away
    pipe.execute()


#: How long a thread's last increment number is remembered per stripe (a lost reply is
#: settled long before).
SEQUENCE_KEEP_MS = 24 * 3600 * 1000


@fail_open
def _incr_redis(
    stripe: StripeKeys, sequence_key: str, member: str, by: int, number: int, batch_size: int
) -> list[int]:
    keys = (stripe.pending, stripe.throttle, sequence_key)
    args = (member, by, batch_size, TRIGGER_THROTTLE_MS, number, SEQUENCE_KEEP_MS)
    shape = topology()
    if shape.may_lag:
        # Invariant 6 across a failover: the increment counts as accepted only once a
        # replica holds it (WAIT 1, in the same round trip); else ReplicaLag.
        return run_many(shape.client, [(scripts.incr, keys, args)], wait=True)[0]  # type: ignore[no-any-return]
    return scripts.incr(shape.client, keys, args)  # type: ignore[no-any-return]


def _incr_database(plan: ModelPlan, pk: Any, field: str, by: int, using: str) -> None:
    updated: Any = F(field) + by
    if plan.is_positive(field):
        updated = Greatest(updated, 0)
    plan.rows(using).filter(pk=pk).update(**{field: updated})


#: The Celery task that flushes every stripe (``tasks.flush_counters``).
FLUSH_TASK = "django_cachestrat.flush_counters"


def _request_flush() -> None:
    try:
        # By name, so this layer never imports the one above it; Celery is optional.
        from celery import current_app

        current_app.send_task(FLUSH_TASK, retry=False)  # never hold an increment up
    except Exception as exc:  # no Celery, or no broker: the periodic flush will come
        logger.warning("Could not queue a write-behind flush: %s", exc)


def version_keys(plan: ModelPlan, pks: Iterable[Any], using: str) -> dict[int, str]:
    """The version key of every stripe these pks fall in (read with the rows)."""
    space = plan.space(using)
    indexes = {space.stripe_of(pk, plan.stripes) for pk in pks}
    return {i: space.stripe(i).version for i in sorted(indexes)}


def overlay(
    plan: ModelPlan, rows: dict[Any, Any], before: dict[int, bytes | None], using: str
) -> None:
    """Add pending increments to the counters of ``rows`` (``{pk: instance}``).

    ``before`` holds each stripe's version as read together with the rows. A stripe
    whose version is unchanged and that has no batch in flight adds its pending deltas to
    the row values as read; otherwise the batch may or may not be in the database, so the
    counters are read from the database together with whether the batch is recorded.
    """
    if not rows:
        return
    space = plan.space(using)
    groups: dict[int, list[Any]] = defaultdict(list)
    for pk in rows:
        groups[space.stripe_of(pk, plan.stripes)].append(pk)
    try:
        results = _counts(plan, space, groups)
    except Unavailable:
        return  # pending increments cannot be read: the database values stand
    for (index, pks), result in zip(groups.items(), results, strict=True):
        version, claim, pending, _ = result
        if version == (before.get(index) or b"0") and claim is None:
            _add(plan, rows, pks, pending, None)
        else:
            _settle(plan, space, rows, (index, pks), result, using)


@fail_open
def _counts(plan: ModelPlan, space: KeySpace, groups: dict[int, list[Any]]) -> list[Any]:
    calls = [
        (scripts.counts, space.stripe(index)[:4], _members(plan, pks))
        for index, pks in groups.items()
    ]
    return scripts.run_many(connection(), calls)


def _members(plan: ModelPlan, pks: list[Any]) -> list[str]:
    return [f"{field}:{key_part(pk)}" for pk in pks for field in plan.options.counters]


def _add(
    plan: ModelPlan,
    rows: dict[Any, Any],
    pks: list[Any],
    pending: list[Any],
    base: dict[Any, tuple[Any, ...]] | None,
) -> None:
    fields = plan.options.counters
    for i, pk in enumerate(pks):
        instance = rows[pk]
        shown = {}
        for j, field in enumerate(fields):
            delta = int(pending[i * len(fields) + j] or 0)
            value = (base[pk][j] if base and pk in base else getattr(instance, field)) + delta
            if plan.is_positive(field):
                value = max(value, 0)
            setattr(instance, field, value)
            shown[plan.counter_attnames[field]] = value
        # save() writes each counter's change relative to what is shown here.
        counter_saves.show(instance, shown)


def _settle(
    plan: ModelPlan,
    space: KeySpace,
    rows: dict[Any, Any],
    group: tuple[int, list[Any]],
    result: list[Any],
    using: str,
) -> None:
    """Counters of a stripe whose batch is in flight: read them from the database with
    whether the batch is recorded (one statement, one snapshot), and accept the result
    once the stripe's version shows no batch moved meanwhile."""
    index, pks = group
    for _ in range(5):
        version, claim, _, _ = result
        batch_id = claim.rsplit(b":", 1)[0].decode() if claim else None
        base, applied = _database_counts(plan, pks, batch_id, using)
        (latest,) = _counts_or_none(plan, space, {index: pks}) or [result]
        if latest[0] == version:
            _, _, pending, claimed = latest
            if claimed and not applied:
                pending = [int(a or 0) + int(b or 0) for a, b in zip(pending, claimed, strict=True)]
            _add(plan, rows, pks, pending, base)
            return
        result = latest
    _add(plan, rows, pks, result[2], base)  # the stripe kept moving: best effort


def _counts_or_none(
    plan: ModelPlan, space: KeySpace, groups: dict[int, list[Any]]
) -> list[Any] | None:
    try:
        return _counts(plan, space, groups)
    except Unavailable:
        return None


def _database_counts(
    plan: ModelPlan, pks: list[Any], batch_id: str | None, using: str
) -> tuple[dict[Any, tuple[Any, ...]], bool]:
    from .models import CounterBatch

    fields = plan.options.counters
    query: Any = plan.rows(using)  # batches are recorded in the database they apply to
    recorded = CounterBatch.objects.filter(id=batch_id or "")
    query = query.filter(pk__in=pks).annotate(_batch_recorded=Exists(recorded))
    values = list(query.values_list("pk", *fields, "_batch_recorded"))
    applied = any(row[-1] for row in values)
    return {row[0]: tuple(row[1:-1]) for row in values}, applied
