"""Delete-on-save invalidation: once the write has committed, and replayed after outages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.db import DEFAULT_DB_ALIAS, models, router
from django.db.models.signals import post_delete, post_save

from . import counter_saves, reads, statements, transactions
from .client import REDIS_ERRORS, Unavailable, fail_open, pending, send_invalidations
from .options import cached_models
from .plan import ModelPlan, plan_for
from .signals import flushed, invalidated

__all__ = [
    "connect_receivers",
    "disconnect_receivers",
    "flush",
    "invalidate_pks",
    "invalidate_unknown",
]

#: Past this many rows, one statement's invalidation bumps the model's generation instead
#: of deleting keys one by one.
BULK_LIMIT = 10_000

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


def _keys_for(
    plans: list[ModelPlan], pks: list[Any], values: dict[str, list[Any]] | None
) -> set[str]:
    keys: set[str] = set()
    for plan in plans:
        for pk in pks:
            row = plan.keys.row(pk)
            keys.update((row, plan.keys.lease(row)))
        # Drop the lookup keys of the rows' current values: a cached "no such username"
        # must not outlive the row that now has it. Old values are caught on read.
        for name, field in plan.lookup_fields.items():
            for value in (values or {}).get(name, ()):
                if value is None:
                    continue
                try:
                    lookup = plan.keys.lookup(name, field.to_python(value))
                except ValidationError:
                    continue
                keys.update((lookup, plan.keys.lease(lookup)))
    return keys


_send = fail_open(send_invalidations)


def _send_safely(keys: Iterable[str], generations: Iterable[str], plans: list[ModelPlan]) -> None:
    """Send now; what Redis cannot take is kept and replayed once it answers again."""
    keys, generations = list(keys), list(generations)
    if not (keys or generations):
        return
    try:
        _send(keys, generations)
    except (Unavailable, *REDIS_ERRORS) as exc:
        pending.add(keys, generations, fallback=[plan.keys.generation for plan in plans])
        if not isinstance(exc, Unavailable):  # FAIL_OPEN = False: kept, and it rises
            raise


class Change:
    """What one write did to the cache: keys to delete, generations to bump, the rows."""

    __slots__ = ("flushed", "generations", "inserted", "keys", "pks")

    def __init__(
        self,
        pks: list[Any] | None,
        keys: Iterable[str] = (),
        generations: Iterable[str] = (),
        *,
        inserted: bool = False,
        flushed: bool = False,
    ) -> None:
        self.pks = pks  # None: the rows are not known one by one
        self.keys = set(keys)
        self.generations = set(generations)
        self.inserted = inserted  # rows were inserted (pks given, or None: unnamed)
        self.flushed = flushed  # the model's generation is bumped


def _apply(plans: list[ModelPlan], using: str, change: Change) -> None:
    """Invalidate once the write has committed: now in autocommit, else at commit.

    Inside a transaction nothing is deleted early: the old row stays true for everyone
    else until the commit, the transaction's own reads bypass the cache for the rows it
    changed, and a rollback leaves the cache exactly as it was. The commit-time delete
    also removes every lease taken before it, so a reader that read the old row before
    the commit can no longer fill it (the stale-set race).
    """
    state = transactions.state_for(using)
    if state is None:
        _send_safely(change.keys, change.generations, plans)
        changed = {plan: set(change.pks or ()) for plan in plans}
        _after_commit(changed, plans if change.flushed else [])
        return
    state.add_hook(_on_commit)
    state.keys |= change.keys
    state.generations |= change.generations
    for plan in plans:
        label = plan.keys.label
        if change.inserted and change.pks is None:
            state.inserted.add(label)
            state.touch(label, ())
        else:
            state.touch(label, change.pks)
        state.changed.setdefault(plan, set()).update(change.pks or ())
        if change.flushed:
            state.flushed.add(plan)


def _on_commit(state: transactions.TxState) -> None:
    _send_safely(state.keys, state.generations, list(state.changed))
    _after_commit(state.changed, list(state.flushed))


def note_write(using: str) -> None:
    """A write statement ran on this connection: inside a transaction, nothing read there
    may fill the shared cache until it commits (it may see rows the app cannot name)."""
    state = transactions.state_for(using)
    if state is not None:
        state.wrote = True
        state.add_hook(_on_commit)


def _after_commit(changed: dict[Any, set[Any]], flushed_plans: list[ModelPlan]) -> None:
    for plan, pks in changed.items():
        if pks:
            plan.stats.invalidations += len(pks)
            invalidated.send(plan.model, pks=sorted(pks, key=str))
            if plan.options.strategy == "write_through":
                reads.refill(plan, pks)
    for plan in flushed_plans:
        plan.stats.invalidations += 1
        flushed.send(plan.model)


def invalidate_pks(
    model: type[models.Model],
    pks: Iterable[Any],
    using: str | None = None,
    values: dict[str, list[Any]] | None = None,
) -> None:
    """Drop rows, and lookups of the given ``{field: values}``, once the write commits."""
    pks = list(pks)
    plans = family(model)
    if not plans or not pks:
        return
    using = using or DEFAULT_DB_ALIAS
    if len(pks) > BULK_LIMIT:
        invalidate_unknown(model, using)
        return
    try:
        pks = [plans[0].clean_pk(pk) for pk in pks]
        keys = _keys_for(plans, pks, values)
        change = Change(pks, keys)
        hash(frozenset(pks))
    except (TypeError, ValueError):  # a pk value that cannot name a key: flush instead
        invalidate_unknown(model, using)
        return
    _apply(plans, using, change)


def invalidate_unknown(model: type[models.Model], using: str) -> None:
    """Rows changed but not named (a bulk write the app cannot list): flush the model."""
    plans = family(model)
    if plans:
        generations = {p.keys.generation for p in plans}
        _apply(plans, using, Change(None, generations=generations, flushed=True))


def invalidate_absences(
    model: type[models.Model], using: str, pks: list[Any] | None = None
) -> None:
    """Rows were inserted: void the model's cached absences. Inside a transaction, the
    new rows (or, unnamed, every absence of the model) bypass the cache until commit."""
    plans = family(model)
    if plans:
        absences = {p.keys.absent for p in plans}
        _apply(plans, using, Change(pks, generations=absences, inserted=True))


def flush(model: type[models.Model], using: str | None = None) -> None:
    """Drop a model's whole namespace: one SET of a new generation, O(1) on Redis. Inside
    a transaction it waits for the commit, like any invalidation: flushed early, readers
    would refill the old rows under the new generation, and they would outlive the commit."""
    plan = plan_for(model)
    using = using or router.db_for_write(model)
    _apply([plan], using, Change(None, generations=[plan.keys.generation], flushed=True))


def _on_write(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    if statements.was_handled(sender, instance.pk):
        return  # the statement itself was seen, with its pks and lookup values
    values = {
        name: [getattr(instance, field.attname, None)]
        for plan in family(sender)
        for name, field in plan.lookup_fields.items()
    }
    invalidate_pks(sender, [instance.pk], using, values)


def watched_models() -> list[type[models.Model]]:
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
    counters: dict[type[models.Model], set[str]] = {}
    for model in watched_models():
        uid = f"django_cachestrat:{model._meta.label_lower}"
        post_save.connect(_on_write, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(_on_write, sender=model, dispatch_uid=uid, weak=False)
        counters[model] = {name for plan in family(model) for name in plan.options.counters}
        _connected.append(model)
    counter_saves.install({model: names for model, names in counters.items() if names})


def disconnect_receivers() -> None:
    for model in _connected:
        uid = f"django_cachestrat:{model._meta.label_lower}"
        post_save.disconnect(sender=model, dispatch_uid=uid)
        post_delete.disconnect(sender=model, dispatch_uid=uid)
    _connected.clear()
    counter_saves.uninstall()
