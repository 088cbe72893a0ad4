"""Delete-on-save invalidation: at write time, again on commit, and replayed after outages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import DEFAULT_DB_ALIAS, models, transaction
from django.db.models.signals import post_delete, post_save

from . import reads
from .client import Unavailable, connection, fail_open, pending
from .options import cached_models
from .plan import ModelPlan, plan_for
from .signals import invalidated
from .transactions import record_write

__all__ = ["connect_receivers", "disconnect_receivers", "flush", "invalidate_pks"]


_families: dict[type[models.Model], list[ModelPlan]] = {}


def family(model: type[models.Model]) -> list[ModelPlan]:
    """Plans of every cached model that stores this model's rows: itself and its
    multi-table-inheritance ancestors and descendants (they share pk values)."""
    try:
        return _families[model]
    except KeyError:
        pass
    concrete = model._meta.concrete_model or model
    cached = set(cached_models())
    related = [concrete, *concrete._meta.get_parent_list()]
    related += [m for m in cached if concrete in m._meta.get_parent_list()]
    plans = _families[model] = [plan_for(m) for m in dict.fromkeys(related) if m in cached]
    return plans


def reset() -> None:
    _families.clear()


def _keys_for(plans: list[ModelPlan], pks: Iterable[Any], instance: Any = None) -> list[str]:
    keys: list[str] = []
    for plan in plans:
        for pk in pks:
            row = plan.keys.row(pk)
            keys += (row, plan.keys.lease(row))
        if instance is None:
            continue
        # Drop the lookup keys of the row's current values: a cached "no such username"
        # must not outlive the row that now has it. Old values are caught on read.
        for name, field in plan.lookup_fields.items():
            value = getattr(instance, field.attname, None)
            if value is not None:
                lookup = plan.keys.lookup(name, value)
                keys += (lookup, plan.keys.lease(lookup))
    return keys


@fail_open
def _delete(keys: list[str]) -> None:
    connection().delete(*keys)


def delete_keys(keys: list[str], generation: str) -> None:
    """Delete now; if Redis cannot take it, keep it for replay once Redis answers."""
    if not keys:
        return
    try:
        _delete(keys)
    except Unavailable:
        pending.add(keys, generation)


def invalidate_pks(
    model: type[models.Model], pks: Iterable[Any], using: str | None = None, instance: Any = None
) -> None:
    """Drop rows from the cache now and again when the current transaction commits."""
    pks = list(pks)
    plans = family(model)
    if not plans or not pks:
        return
    using = using or DEFAULT_DB_ALIAS
    keys = _keys_for(plans, pks, instance)
    generation = plans[0].keys.generation
    for plan in plans:
        record_write(plan.keys.label, pks, using)
    delete_keys(keys, generation)

    def on_commit() -> None:
        # The second delete closes the window in which a reader filled the old row
        # between the write and the commit.
        delete_keys(keys, generation)
        for plan in plans:
            invalidated.send(plan.model, pks=pks)
            if plan.options.strategy == "write_through":
                reads.warm(plan, pks)

    transaction.on_commit(on_commit, using=using, robust=True)


def flush(model: type[models.Model]) -> None:
    """Drop a model's whole namespace: one INCR of its generation, O(1) on Redis."""
    generation = plan_for(model).keys.generation
    try:
        _incr(generation)
    except Unavailable:
        pending.add_flush(generation)


@fail_open
def _incr(key: str) -> None:
    connection().incr(key)


def _on_save(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    invalidate_pks(sender, [instance.pk], using, instance)


def _on_delete(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    invalidate_pks(sender, [instance.pk], using, instance)


def _watched_models() -> list[type[models.Model]]:
    """Models whose writes can change a cached row (proxies and MTI relatives included)."""
    cached = set(cached_models())
    watched = []
    for model in apps.get_models():
        concrete = model._meta.concrete_model or model
        chain = {concrete, *concrete._meta.get_parent_list()}
        if chain & cached or any(concrete in m._meta.get_parent_list() for m in cached):
            watched.append(model)
    return watched


_connected: list[type[models.Model]] = []


def connect_receivers() -> None:
    """Connect per cached model (a global receiver would disable Django's fast deletes)."""
    disconnect_receivers()
    for model in _watched_models():
        uid = f"django_cachestrat:{model._meta.label_lower}"
        post_save.connect(_on_save, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(_on_delete, sender=model, dispatch_uid=uid, weak=False)
        _connected.append(model)


def disconnect_receivers() -> None:
    for model in _connected:
        uid = f"django_cachestrat:{model._meta.label_lower}"
        post_save.disconnect(sender=model, dispatch_uid=uid)
        post_delete.disconnect(sender=model, dispatch_uid=uid)
    _connected.clear()
