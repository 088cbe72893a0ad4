"""save() of a write-behind counter writes the change made to the instance, not its value.

An instance shows a counter as read (through ``cached``: database + pending increments).
Meanwhile increments keep arriving and flushes move them into the database, so writing
the shown value back would lose some and count others twice. Instead ``save()`` writes
``counter = counter + (value - shown)``, and an unchanged counter is left as it is.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from django.db import models
from django.db.models import F
from django.db.models.functions import Greatest
from django.db.models.signals import post_init, post_save

from .plan import POSITIVE_FIELDS

__all__ = ["install", "show", "uninstall"]

#: Per instance: {attname: the value the instance showed when read, refreshed or saved}.
SHOWN = "_cachestrat_shown"
#: Per instance, during save(): {attname: the value given}, restored after the UPDATE
#: (Django 6 assigns the value an expression left in the database, without the pending).
SAVING = "_cachestrat_saving"
_UID = "django_cachestrat.counter_saves"

_fields: dict[type[models.Model], list[models.Field[Any, Any]]] = {}
_attnames: dict[type[models.Model], tuple[str, ...]] = {}
_patched_fields: list[models.Field[Any, Any]] = []
_patched_refresh: list[tuple[type[models.Model], Any]] = []
_MISSING = object()


def show(instance: models.Model, values: dict[str, Any]) -> None:
    """Record what the instance now shows for these counters (by attname)."""
    shown = {**instance.__dict__.get(SHOWN, {}), **values}  # a new dict: copies share none
    instance.__dict__[SHOWN] = shown


def _record(instance: models.Model, fields: Iterable[models.Field[Any, Any]]) -> None:
    loaded = instance.__dict__
    values = {f.attname: loaded[f.attname] for f in fields if type(loaded.get(f.attname)) is int}
    if values:
        show(instance, values)


def _on_init(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    # On every instance built (thousands per query): kept to one dict, checked at save().
    loaded = instance.__dict__
    loaded[SHOWN] = {name: loaded[name] for name in _attnames[sender] if name in loaded}


def _on_save(sender: type[models.Model], instance: models.Model, **kwargs: Any) -> None:
    fields = _fields.get(sender, ())
    update_fields = kwargs.get("update_fields")
    if update_fields is not None:
        fields = [f for f in fields if f.name in update_fields or f.attname in update_fields]
    given = instance.__dict__.pop(SAVING, {})
    for field in fields:
        if field.attname in given:
            setattr(instance, field.attname, given[field.attname])
    _record(instance, fields)  # what was written is what the instance now shows


def _pre_save(
    field: models.Field[Any, Any],
    original: Callable[[models.Model, bool], Any],
    instance: models.Model,
    add: bool,
) -> Any:
    """``Field.pre_save`` of a counter: the value to write in an UPDATE is the change."""
    value = original(instance, add)
    if add:
        return value  # an INSERT (bulk_create included) writes the value
    loaded = instance.__dict__
    given = {k: v for k, v in loaded.pop(SAVING, {}).items() if k != field.attname}
    shown = loaded.get(SHOWN, {}).get(field.attname)
    if instance._state.adding or type(value) is not int or type(shown) is not int:
        # Built by hand, an expression, or never shown a value: written as given.
        if given:
            loaded[SAVING] = given
        return value
    loaded[SAVING] = {**given, field.attname: value}
    change = value - shown
    if change == 0:
        return F(field.attname)
    if change < 0 and isinstance(field, POSITIVE_FIELDS):
        return Greatest(F(field.attname) + change, 0)  # clamped at 0, as flushes are
    return F(field.attname) + change


def _refresh_wrapper(original: Callable[..., Any]) -> Callable[..., Any]:
    signature = inspect.signature(original)

    @functools.wraps(original)
    def refresh_from_db(self: models.Model, *args: Any, **kwargs: Any) -> Any:
        result = original(self, *args, **kwargs)
        fields = _fields.get(type(self), ())
        named = signature.bind(self, *args, **kwargs).arguments.get("fields")
        if named is not None:
            fields = [f for f in fields if f.name in named or f.attname in named]
        _record(self, fields)  # the instance now shows the database's values
        return result

    refresh_from_db.cachestrat_original = original  # type: ignore[attr-defined]
    return refresh_from_db


def install(counters: dict[type[models.Model], set[str]]) -> None:
    """``counters``: for every model whose instances hold counters, their field names."""
    uninstall()
    for model, names in counters.items():
        fields = [f for f in model._meta.concrete_fields if f.name in names]
        if not fields:
            continue
        _fields[model] = fields
        _attnames[model] = tuple(f.attname for f in fields)
        post_init.connect(_on_init, sender=model, dispatch_uid=_UID, weak=False)
        post_save.connect(_on_save, sender=model, dispatch_uid=_UID, weak=False)
        for field in fields:
            if "pre_save" not in field.__dict__:
                field.pre_save = functools.partial(_pre_save, field, field.pre_save)  # type: ignore[method-assign]
                _patched_fields.append(field)
        if not hasattr(model.refresh_from_db, "cachestrat_original"):
            _patched_refresh.append((model, model.__dict__.get("refresh_from_db", _MISSING)))
            model.refresh_from_db = _refresh_wrapper(model.refresh_from_db)  # type: ignore[method-assign]


def uninstall() -> None:
    for model in _fields:
        post_init.disconnect(sender=model, dispatch_uid=_UID)
        post_save.disconnect(sender=model, dispatch_uid=_UID)
    _fields.clear()
    _attnames.clear()
    for field in _patched_fields:
        field.__dict__.pop("pre_save", None)
    _patched_fields.clear()
    for model, previous in reversed(_patched_refresh):
        if previous is _MISSING:
            del model.refresh_from_db
        else:
            model.refresh_from_db = previous
    _patched_refresh.clear()
