"""System check of write-behind counters across models: one column, one counter."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from django.core.checks import CheckMessage, Warning
from django.db import models

from .options import cached_models, options_for

__all__ = ["check_counters", "check_eviction"]


def check_counters(**kwargs: Any) -> list[CheckMessage]:
    """W110: a column that two models of a multi-table family both count."""
    counted: dict[tuple[str, str], list[type[models.Model]]] = defaultdict(list)
    try:
        for model in cached_models():
            for name in options_for(model).counters:
                field = model._meta.get_field(name)
                table = field.model._meta.db_table  # a parent's, for an inherited field
                counted[table, str(getattr(field, "column", name))].append(model)
    except Exception:  # invalid options: check_settings and check_models report them
        return []
    warnings: list[CheckMessage] = []
    for (table, column), counting in counted.items():
        if len(counting) < 2:
            continue
        labels = " and ".join(m._meta.label for m in counting)
        warnings += [
            Warning(
                f"Column {table}.{column} is a write-behind counter of {labels}: each keeps "
                "its own pending increments, so a read through one does not show those made "
                "through the other until a flush has applied them.",
                hint=(
                    "Count it in one model only, and increment and read it through that "
                    "model. A multi-table child inherits its parent's CacheMeta: give the "
                    "child a CacheMeta of its own without the counter."
                ),
                obj=model,
                id="django_cachestrat.W110",
            )
            for model in counting[1:]
        ]
    return warnings


def check_eviction(**kwargs: Any) -> list[CheckMessage]:
    """W130: Redis may evict pending write-behind increments (an ``allkeys-*`` policy).

    Reads ``INFO memory`` only when some model has counters; a Redis that cannot be
    reached gives no warning (the app fails open, and Redis is checked again at run time).
    """
    from .client import topology
    from .eviction import risk

    try:
        message = risk(topology().primaries())
    except Exception:  # no Redis now, or settings that other checks report
        return []
    if not message:
        return []
    return [
        Warning(
            message,
            hint="Set maxmemory-policy to volatile-lru or volatile-lfu (docs/deployment.md).",
            id="django_cachestrat.W130",
        )
    ]
