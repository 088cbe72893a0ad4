"""Delete-on-save invalidation: once the write has committed, and replayed after outages."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.apps import apps
from django.db import models, router
from django.db.models.signals import post_delete, post_save

from . import counter_saves, counters, handled, reads, relations, replicas, requestlog, transactions
from .breaker import Unavailable
from .client import REDIS_ERRORS
from .conf import primary_aliases
from .failopen import fail_open
from .options import cached_models
from .pending import pending, send_invalidations
from .plan import ModelPlan, plan_for
from .signals import flushed, invalidated
from .topology import ReplicaLag

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
    plans: list[ModelPlan], pks: list[Any], values: dict[str, list[Any]] | None, using: str
) -> set[str]:
    keys: set[str] = set()
    for plan in plans:
        space = plan.space(using)
        for pk in pks:
            row = space.row(pk)
            keys.update((row, space.lease(row)))
        # Drop the lookup keys of the rows' current values: a cached "no such username"
        # must not outlive the row that now has it. Old values are caught on read.
        for name, field in plan.lookup_fields.items():
            for value in (values or {}).get(name, ()):
                if value is None:
                    continue
                try:  # cleaned as a read cleans it (plan.clean), so both name one key
                    lookup = space.lookup(name, plan.clean(field, value))
                except ValueError:
                    continue
                keys.update((lookup, space.lease(lookup)))
    return keys


_send = fail_open(send_invalidations)


def _send_safely(
    keys: Iterable[str],
    generations: Iterable[str],
    fallback: Iterable[str],
    marks: Iterable[str] = (),
    lag_ms: int = 0,
) -> None:
    """Send now; what Redis cannot take is kept and replayed once it answers again.

    ``marks``: markers to set for ``lag_ms`` with the deletes (a primary with replicas). A
    replay sets none: by the time Redis answers again, the replicas have caught up.
    """
    keys, generations = list(keys), list(generations)
    if not (keys or generations):
        return
    try:
        _send(keys, generations, list(marks), lag_ms)
    except ReplicaLag as lag:  # the primary has them; a replica may not yet
        pending.add_unconfirmed(lag)
    except (Unavailable, *REDIS_ERRORS) as exc:
        pending.add(keys, generations, fallback=list(fallback))
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
        _send_marked(plans, using, change.keys, change.generations)
        changed = {plan: set(change.pks or ()) for plan in plans}
        _after_commit(changed, plans if change.flushed else [], using)
        return
    state.add_hook(_on_commit, first=True)
    if (log := requestlog.active()) is not None:  # a debug panel is recording
        log.queued([plan.keys.label for plan in plans], change.pks)
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
    # Every plan _apply saw is in ``changed``, and a state is its database's (``alias``).
    _send_marked(list(state.changed), state.alias, state.keys, state.generations)
    _after_commit(state.changed, list(state.flushed), state.alias)


def _send_marked(
    plans: list[ModelPlan], using: str, keys: Iterable[str], generations: Iterable[str]
) -> None:
    """Send the deletes of a write on ``using``, marked for its replicas if it has any;
    the plans' generations stand in for keys that cannot be delivered."""
    lag_ms = plans[0].lag_ms if plans and using in plans[0].primaries else 0
    marks = replicas.marks(keys, generations) if lag_ms else ()
    fallback = [plan.space(using).generation for plan in plans]
    _send_safely(keys, generations, fallback, marks, lag_ms)


def note_write(using: str) -> None:
    """A write statement ran on this connection: inside a transaction, nothing read there
    may fill the shared cache until it commits (it may see rows the app cannot name)."""
    state = transactions.state_for(using)
    if state is not None:
        state.wrote = True
        state.add_hook(_on_commit, first=True)


def _after_commit(
    changed: dict[Any, set[Any]], flushed_plans: list[ModelPlan], using: str | None
) -> None:
    for plan, pks in changed.items():
        if pks:
            plan.stats.invalidations += len(pks)
            if (log := requestlog.active()) is not None:  # a debug panel is recording
                log.sent(plan.keys.label, len(pks))
            invalidated.send(plan.model, pks=sorted(pks, key=str))
            if plan.options.strategy == "write_through":
                # From the database written: a replica may not have the commit yet.
                reads.refill(plan, pks, using)
    for plan in flushed_plans:
        plan.stats.invalidations += 1
        plan.stats.flushes += 1
        if (log := requestlog.active()) is not None:
            log.sent(plan.keys.label, 1, flushed=True)
        flushed.send(plan.model)


def invalidate_pks(
    model: type[models.Model],
    pks: Iterable[Any],
    using: str | None = None,
    values: dict[str, list[Any]] | None = None,
) -> None:
    """Drop rows, and lookups of the given ``{field: values}``, once the write commits."""
    _invalidate(model, list(pks), using or router.db_for_write(model), values)


def _invalidate(
    model: type[models.Model],
    pks: list[Any],
    using: str,
    values: dict[str, list[Any]] | None,
    instance: models.Model | None = None,
) -> None:
    plans = family(model)
    if not plans or not pks:
        return
    if len(pks) > BULK_LIMIT:
        invalidate_unknown(model, using)
        return
    for group, group_pks in _by_pk_terms(model, plans, pks, using, instance):
        try:
            group_pks = [group[0].clean_pk(pk) for pk in group_pks]
            keys = _keys_for(group, group_pks, values, using)
            change = Change(group_pks, keys)
            hash(frozenset(group_pks))
        except (TypeError, ValueError):  # a pk value that cannot name a key: flush instead
            invalidate_unknown(model, using)
            return
        _apply(group, using, change)


def _by_pk_terms(
    model: type[models.Model],
    plans: list[ModelPlan],
    pks: list[Any],
    using: str,
    instance: models.Model | None,
) -> list[tuple[list[ModelPlan], list[Any]]]:
    """The plans grouped by the pks that name the rows in each: the same values, except
    for a multi-table-inheritance relative whose primary key is its own: a child's are
    looked up, an ancestor's read from the saved instance."""
    concrete = model._meta.concrete_model or model
    same = [p for p in plans if relations.shares_pk(concrete, p.concrete)]
    groups = [(same, pks)] if same else []
    for plan in plans:
        if plan in same:
            continue
        if plan.concrete in concrete._meta.get_parent_list():
            if instance is None:  # a write to this table leaves an ancestor's rows as they are
                continue
            relative = [getattr(instance, plan.pk_field.attname, None)]
        else:
            relative = relations.child_pks(concrete, plan.concrete, pks, using)
        groups.append(([plan], [pk for pk in relative if pk is not None]))
    return [(group, group_pks) for group, group_pks in groups if group_pks]


def invalidate_unknown(model: type[models.Model], using: str) -> None:
    """Rows changed but not named (a bulk write the app cannot list): flush the model."""
    invalidate_models([model], using)


def invalidate_models(changed: Iterable[type[models.Model]], using: str) -> None:
    """Flush several models at once: one pipelined round trip for all their generations."""
    plans = list({plan: None for model in changed for plan in family(model)})
    if plans:
        generations = {p.space(using).generation for p in plans}
        _apply(plans, using, Change(None, generations=generations, flushed=True))


def truncated(emptied: Iterable[type[models.Model]], using: str) -> None:
    """Tables were emptied (their rows are flushed by the caller): once that commits,
    their pending increments go too, or a test run's table flush would leave them for the
    next test's rows with the same pks."""
    cached = set(cached_models())
    plans = [plan_for(m) for m in emptied if m in cached]
    state = transactions.state_for(using)
    if state is None:
        counters.forget_pending(plans, using)
    else:
        state.add_hook(lambda _: counters.forget_pending(plans, using))


def invalidate_absences(
    model: type[models.Model], using: str, pks: list[Any] | None = None
) -> None:
    """Rows were inserted: void the model's cached absences. Inside a transaction, the
    new rows (or, unnamed, every absence of the model) bypass the cache until commit."""
    plans = family(model)
    if plans:
        absences = {p.space(using).absent for p in plans}
        _apply(plans, using, Change(pks, generations=absences, inserted=True))


def flush(model: type[models.Model], using: str | None = None) -> None:
    """Drop a model's whole namespace: one SET of a new generation, O(1) on Redis; in the
    database ``using``, by default in every database (a replica's rows are its primary's).
    Inside a transaction it waits for the commit, like any invalidation: flushed early,
    readers would refill the old rows under the new generation, and they would outlive the
    commit."""
    plan = plan_for(model)
    for alias in [using] if using else primary_aliases():
        generation = plan.space(alias).generation
        _apply([plan], alias, Change(None, generations=[generation], flushed=True))


def _on_write(sender: type[models.Model], instance: models.Model, using: str, **kw: Any) -> None:
    if handled.was_handled(sender, instance.pk):
        return  # the statement itself was seen, with its pks and lookup values
    values = {
        name: [getattr(instance, field.attname, None)]
        for plan in family(sender)
        for name, field in plan.lookup_fields.items()
    }
    _invalidate(sender, [instance.pk], using, values, instance)


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
    """Connect ``post_save`` per cached model. Deletes need no receiver: every ``DELETE``
    reaches the statement wrapper, which names its rows (``RETURNING``, or the pks in its
    ``WHERE``) or flushes the model; and a ``post_delete`` receiver would turn Django's fast
    deletes off (a collector must load rows that a receiver would be sent)."""
    disconnect_receivers()
    counters: dict[type[models.Model], set[str]] = {}
    for model in watched_models():
        uid = f"django_cachestrat:{model._meta.label_lower}"
        post_save.connect(_on_write, sender=model, dispatch_uid=uid, weak=False)
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
