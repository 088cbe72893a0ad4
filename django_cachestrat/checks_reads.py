"""System checks of reads the cache cannot answer as the ORM does; they go to the database."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Warning
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .options import cached_models, options_for
from .plan import has_collation
from .transparent import overrides_get

__all__ = ["check_reads"]


def check_reads(**kwargs: Any) -> list[CheckMessage]:
    """Warn where a cached model's reads are sent to the database instead of the cache."""
    try:
        found = cached_models()
    except Exception:  # invalid settings: check_settings reports them with their ids
        return []
    return [w for model in found for w in _collations(model) + _own_gets(model)]


def _collations(model: type[models.Model]) -> list[CheckMessage]:
    meta = model._meta
    fields: list[tuple[str, Any]] = [("pk", meta.pk)]
    for name in options_for(model).lookups:
        try:
            fields.append((name, meta.get_field(name)))
        except FieldDoesNotExist:  # reported as E010
            continue
    return [
        Warning(
            f"{meta.label}.{field.name} has a db_collation, so reads by "
            f"{'its pk' if name == 'pk' else f'the lookup {name!r}'} are sent to the "
            f"database, not the cache.",
            hint=(
                "A cache key matches a value exactly, while a collation may find "
                "different values equal ('ABC' and 'abc' under a case-insensitive one). "
                "Remove the lookup, or the db_collation if the column does not need it."
            ),
            obj=model,
            id="django_cachestrat.W120",
        )
        for name, field in fields
        if has_collation(field)
    ]


def _own_gets(model: type[models.Model]) -> list[CheckMessage]:
    if not options_for(model).transparent:
        return []
    return [
        Warning(
            f"{model._meta.label}.{manager.name}: its queryset "
            f"{_queryset_class(manager).__qualname__} overrides get(), so transparent mode leaves "
            f"the manager as it is: its get() never uses the cache.",
            hint=(
                "Transparent mode would skip that get() and its filters (soft delete, "
                "tenancy). Read through Model.cached where a cached read is right, or move "
                "the filter into get_queryset(), which transparent mode respects."
            ),
            obj=model,
            id="django_cachestrat.W121",
        )
        for manager in model._meta.managers
        if overrides_get(_queryset_class(manager))
    ]


def _queryset_class(manager: Any) -> type[Any]:
    return getattr(manager, "_queryset_class", models.QuerySet)
