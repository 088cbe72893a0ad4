"""Transparent mode: ``objects.get(pk=)`` and ``get(<lookup>=)`` served by the cache, per model.

Only the managers of models that opt in (``transparent = True``) get a queryset subclass,
and it takes the cache path only for a plain single-row lookup; every other queryset is
the model's own, unchanged.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from django.apps import apps
from django.db import models, router
from django.db.models.query import ModelIterable

from . import lookups, reads
from .options import is_cached, options_for
from .plan import has_collation, plan_for

__all__ = ["install", "overrides_get", "uninstall"]

#: True while a transparent ``get`` is on the cache path. Its own database reads go through
#: the model's base manager, which may be this very manager (``Meta.base_manager_name``):
#: they must reach the database, not come back here.
_on_cache_path: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "django_cachestrat_transparent", default=False
)


class TransparentQuerySetMixin:
    """Serves ``get(pk=...)`` / ``get(<lookup>=...)`` from the cache when nothing else
    about the queryset could change the answer."""

    model: type[models.Model]
    query: Any
    _db: str | None
    _for_write: bool
    _hints: dict[str, Any]
    _fields: Any
    _iterable_class: Any
    _prefetch_related_lookups: tuple[Any, ...]

    def get(self, *args: Any, **kwargs: Any) -> Any:
        if not args and len(kwargs) == 1 and not _on_cache_path.get() and self._is_plain():
            ((name, value),) = kwargs.items()
            token = _on_cache_path.set(True)
            try:
                found = _cached_get(self.model, name.removesuffix("__exact"), value)
            except self.model.DoesNotExist:  # type: ignore[attr-defined]
                # The ORM's own message, so nothing tells a cached miss from a query.
                raise self.model.DoesNotExist(  # type: ignore[attr-defined]
                    f"{self.model._meta.object_name} matching query does not exist."
                ) from None
            finally:
                _on_cache_path.reset(token)
            if found is not None:
                return found
        return super().get(*args, **kwargs)  # type: ignore[misc]

    def __reduce__(self) -> tuple[Any, ...]:
        # The class is made at run time and cannot be found by name: pickle (and copy)
        # the model's own queryset class, made transparent again by ``_rebuild``.
        original = type(self).__bases__[-1]
        return (_rebuild, (original, self.__getstate__()))

    def _is_plain(self) -> bool:
        query = self.query
        return not (
            self._for_write
            or self._hints
            or self._fields is not None
            or self._iterable_class is not ModelIterable
            or self._prefetch_related_lookups
            or query.where
            or query.select_related
            or query.select_for_update
            or query.annotations
            or query.extra
            or query.combinator
            or query.distinct
            or query.low_mark
            or query.high_mark is not None
            or query.deferred_loading != (frozenset(), True)
            or (self._db is not None and self._db != router.db_for_read(self.model))
        )


def _cached_get(model: type[models.Model], name: str, value: Any) -> Any:
    """The row from the cache, or None to let the queryset run as usual."""
    if value is None or isinstance(value, models.expressions.Combinable):
        return None
    if model._meta.is_composite_pk:
        return None  # a tuple pk: the ORM validates its shape and reads it
    plan = plan_for(model)
    if name in ("pk", plan.pk_field.name, plan.pk_field.attname):
        lookup = "pk"
    elif name in plan.lookup_fields:
        lookup = name
    else:
        return None
    field = plan.pk_field if lookup == "pk" else plan.lookup_fields[lookup]
    if has_collation(field):
        return None  # the database may find equal what the cache keys apart
    if isinstance(value, models.Model):
        # The ORM takes an instance only for a relation to its model, and compares the
        # relation's target field; any other instance it rejects with its own error.
        if not field.is_relation or not isinstance(value, field.related_model):  # type: ignore[arg-type]
            return None
        value = getattr(value, field.target_field.attname)  # type: ignore[attr-defined]
        if value is None:
            return None
    try:
        plan.clean(field, value)
    except ValueError:
        return None  # let the ORM raise its own error for a bad value
    if lookup == "pk":
        return reads.get(plan, value)
    return lookups.get_by_lookup(plan, lookup, value)


_classes: dict[type[Any], type[Any]] = {}
_patched: dict[Any, type[Any]] = {}


def _transparent(queryset_class: type[Any]) -> type[Any]:
    """The transparent subclass of a queryset class. It keeps the original's module and
    name, so ``Manager.deconstruct()`` (``as_manager()`` managers in migrations) still
    names the original."""
    try:
        return _classes[queryset_class]
    except KeyError:
        names = {
            "__module__": queryset_class.__module__,
            "__qualname__": queryset_class.__qualname__,
        }
        bases = (TransparentQuerySetMixin, queryset_class)
        cls = _classes[queryset_class] = type(queryset_class.__name__, bases, names)
        return cls


def _rebuild(queryset_class: type[Any], state: dict[str, Any]) -> Any:
    """Unpickle a queryset: transparent again if its model's managers are, here and now."""
    model = state.get("model")
    if any(m.model is model and o is queryset_class for m, o in _patched.items()):
        queryset_class = _transparent(queryset_class)
    queryset = cast(Any, queryset_class).__new__(queryset_class)
    queryset.__setstate__(state)
    return queryset


def install() -> None:
    """Give the managers of every transparent model the cache-aware queryset."""
    uninstall()
    for model in apps.get_models():
        if not is_cached(model) or not options_for(model).transparent:
            continue
        for manager in model._meta.managers:
            original = manager._queryset_class  # type: ignore[attr-defined]
            # A queryset's own get() (soft delete, tenancy) must keep its say: such a
            # manager is left as it is (check W121).
            if issubclass(original, TransparentQuerySetMixin) or overrides_get(original):
                continue
            manager._queryset_class = _transparent(original)  # type: ignore[attr-defined]
            _patched[manager] = original


def overrides_get(queryset_class: type[Any]) -> bool:
    """Whether a queryset class defines a ``get()`` of its own, above ``QuerySet``'s."""
    for klass in queryset_class.__mro__:
        if klass is not TransparentQuerySetMixin and "get" in vars(klass):
            return klass is not models.QuerySet
    return False


def uninstall() -> None:
    for manager, original in _patched.items():
        manager._queryset_class = original
    _patched.clear()
