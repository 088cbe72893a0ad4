"""The read overlay of write-behind counters: pending increments added to rows read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from django.db.models import Exists

from . import counter_saves
from .breaker import Unavailable
from .client import connection
from .failopen import fail_open
from .keys import KeySpace, claim_parts, stripe_member
from .plan import ModelPlan
from .scripts import scripts

__all__ = ["overlay", "version_keys"]


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
    return [stripe_member(field, pk) for pk in pks for field in plan.options.counters]


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
        batch_id = claim_parts(claim)[0] if claim else None
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
