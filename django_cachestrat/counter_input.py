"""What an increment may be: a declared counter, an int, within the column's range."""

from __future__ import annotations

from typing import Any

from django.db import connections

from .plan import ModelPlan

__all__ = ["validate"]

#: Redis adds in signed 64-bit integers.
INT64 = (-(2**63), 2**63 - 1)


def validate(plan: ModelPlan, field: Any, by: Any, using: str) -> None:
    try:
        # Only a declared counter ever gets bounds: found, the field has passed its check.
        low, high = plan.counter_bounds[field, using]
    except (KeyError, TypeError):  # first use here, not a counter, or unhashable
        low, high = _check_field(plan, field, using)
    if type(by) is not int:
        raise TypeError(f"{_name(plan)}: by must be an int, not {type(by).__name__} ({by!r})")
    if not low <= by <= high:
        kind = type(plan.model._meta.get_field(field)).__name__
        raise ValueError(
            f"{_name(plan)}: by={by} is out of range for {kind} {field!r} ({low} to {high} "
            f"on database {using!r}): the column could never hold it"
        )


def _name(plan: ModelPlan) -> str:
    return f"{plan.model._meta.object_name}.cached.incr()"


def _check_field(plan: ModelPlan, field: Any, using: str) -> tuple[int, int]:
    if field not in plan.options.counters:
        declared = ", ".join(plan.options.counters) or "none"
        raise ValueError(
            f"{_name(plan)}: {field!r} is not a counter of {plan.model._meta.label} "
            f"(declared: {declared}); add it to CacheMeta.counters"
        )
    return _bounds(plan, field, using)


def _bounds(plan: ModelPlan, field: str, using: str) -> tuple[int, int]:
    """How far one increment may move a counter: the column's range (a positive counter
    may go down as far as it can go up); kept on the plan."""
    kind = plan.model._meta.get_field(field).get_internal_type()
    low, high = connections[using].ops.integer_field_range(kind)
    high = INT64[1] if high is None else min(high, INT64[1])
    low = INT64[0] if low is None else max(low, INT64[0])
    bounds = plan.counter_bounds[field, using] = (-high if low >= 0 else low, high)
    return bounds
