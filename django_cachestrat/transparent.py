"""Transparent mode: ``objects.get(pk=)`` and ``get(<lookup>=)`` served by the cache, per model.

Only the managers of models that opt in (``transparent = True``) get a queryset subclass,
and it takes the cache path only for a plain single-row lookup; every other queryset is
the model's own, unchanged.
"""

from __future__ import annotations

import contextvars
from typing import Any, cast

from django.apps import apps
from django.db import connections, models
from django.db.models import Q
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
        lookup = _single_lookup(args, kwargs)
        if (
            lookup is not None
            and self.model in _models
            and not _on_cache_path.get()
            and self._is_plain()
        ):
            _heal(self.model)
            name, value = lookup
            token = _on_cache_path.set(True)
            try:
                found = _cached_get(self.model, name.removesuffix("__exact"), value, self.db)  # type: ignore[attr-defined]
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
            # Any database: keys name the database the query reads (``self.db``, routing
            # hints and ``using()`` included), a replica's being its primary's.
        )


def _single_lookup(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any] | None:
    """``get(name=value)``, or ``get(Q(name=value))`` as a forward relation asks for its
    object (``article.reporter``): the one lookup, else None."""
    if not args and len(kwargs) == 1:
        return next(iter(kwargs.items()))
    if kwargs or len(args) != 1 or not isinstance(args[0], Q):
        return None
    q = args[0]
    if q.negated or len(q.children) != 1 or not isinstance(q.children[0], tuple):
        return None
    name, value = q.children[0]
    return str(name), value


def _cached_get(model: type[models.Model], name: str, value: Any, using: str) -> Any:
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
        cleaned = plan.clean(field, value)
    except ValueError:
        return None  # let the ORM raise its own error for a bad value
    if _out_of_range(using, field, cleaned):
        return None  # the ORM answers "does not exist" without a query
    if lookup == "pk":
        return reads.get(plan, value, using)
    return lookups.get_by_lookup(plan, lookup, value, using)


def _out_of_range(using: str, field: Any, value: Any) -> bool:
    if not isinstance(field, models.IntegerField) or not isinstance(value, int):
        return False
    ops = connections[using].ops
    low, high = ops.integer_field_range(field.get_internal_type())
    return (low is not None and value < low) or (high is not None and value > high)


_classes: dict[type[Any], type[Any]] = {}
_patched: dict[Any, type[Any]] = {}
#: The models that opted in: a manager shared through an abstract base may also serve
#: models that did not.
_models: set[type[models.Model]] = set()


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
    transparent = _classes.get(queryset_class)
    if any(m.model is model and m._queryset_class is transparent for m in _patched):
        queryset_class = _transparent(queryset_class)
    queryset = cast(Any, queryset_class).__new__(queryset_class)
    queryset.__setstate__(state)
    return queryset


def install() -> None:
    """Give the managers of every transparent model the cache-aware queryset."""
    uninstall()
    models_ = {m for m in apps.get_models() if is_cached(m) and options_for(m).transparent}
    _models.update(models_)
    for model in models_:
        # The managers a model declares, not only the copies in ``_meta.managers``:
        # ``apps.clear_cache()`` (a model created at run time, ``isolate_apps``) makes
        # fresh copies of them. The base manager too: forward relations
        # (``article.reporter``) read through it.
        meta = model._meta
        for manager in {*meta.local_managers, *meta.managers, meta.base_manager}:
            _patch(manager)


def _patch(manager: Any) -> None:
    """Swap the manager's class for a subclass whose querysets are transparent."""
    original = type(manager)
    if "_cachestrat_original" in vars(original) or "_queryset_class" in vars(manager):
        return  # patched already, or a queryset class of its own: left as it is
    if overrides_get(manager._queryset_class):
        return  # a queryset's own get() (soft delete, tenancy) keeps its say (check W121)
    manager.__class__ = _transparent_manager(original)
    _patched[manager] = original


_managers: dict[type[Any], type[Any]] = {}


def _transparent_manager(manager_class: type[Any]) -> type[Any]:
    """The transparent subclass of a manager class.

    To Django it is still the model's own class: ``__class__`` answers the original (the
    related managers Django builds subclass ``_default_manager.__class__``, and keep their
    ``superclass is Manager`` optimisations), it keeps the original's module and name
    (``Manager.deconstruct()`` names the class in migrations), and it pickles as the
    original. Only ``type()`` and ``copy.copy()`` (``_meta.managers`` holds copies) see it.
    """
    try:
        return _managers[manager_class]
    except KeyError:
        names = {
            "__module__": manager_class.__module__,
            "__qualname__": manager_class.__qualname__,
            "_queryset_class": _transparent(manager_class._queryset_class),
            "_cachestrat_original": manager_class,
            "__copy__": _copy_manager,
            "__reduce_ex__": _reduce_manager,
            "__class__": property(lambda self: manager_class, _set_class),
        }
        cls = _managers[manager_class] = type(manager_class.__name__, (manager_class,), names)
        return cls


def _copy_manager(self: Any) -> Any:
    copied = object.__new__(type(self))
    copied.__dict__.update(self.__dict__)
    return copied


def _reduce_manager(self: Any, protocol: int) -> tuple[Any, ...]:
    return (_unpickle_manager, (self._cachestrat_original, self.__dict__.copy()))


def _unpickle_manager(manager_class: type[Any], state: dict[str, Any]) -> Any:
    manager = object.__new__(manager_class)
    manager.__dict__.update(state)
    return manager


_SET_CLASS = object.__dict__["__class__"].__set__


def _set_class(self: Any, value: type[Any]) -> None:
    _SET_CLASS(self, value)


def _heal(model: type[models.Model]) -> None:
    """An automatic base manager is made anew after ``apps.clear_cache()``: patch it
    again, so forward relations keep reading through the cache."""
    manager: Any = model._meta.base_manager
    if manager not in _patched:
        _patch(manager)


def overrides_get(queryset_class: type[Any]) -> bool:
    """Whether a queryset class defines a ``get()`` of its own, above ``QuerySet``'s."""
    for klass in queryset_class.__mro__:
        if klass is not TransparentQuerySetMixin and "get" in vars(klass):
            return klass is not models.QuerySet
    return False


def uninstall() -> None:
    for manager, original in _patched.items():
        manager.__class__ = original
    _patched.clear()
    _models.clear()
