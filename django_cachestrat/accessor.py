"""``Model.cached``: the public read API of a cached model."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar, overload

from django.db import connections, models

from . import areads, counters, invalidation, lookups, reads, tracing
from .plan import ModelPlan, plan_for

__all__ = ["CachedAccessor", "CachedDescriptor"]

M = TypeVar("M", bound=models.Model)


class CachedAccessor(Generic[M]):
    """Reads through Redis for one model; ``objects`` is left as it is."""

    def __init__(self, model: type[M], using: str | None = None) -> None:
        self.model = model
        self._db = using  # None: the router's database for each call

    def using(self, alias: str) -> CachedAccessor[M]:
        """The same reads, invalidations and flushes on the database ``alias`` (its rows
        and its keys), as ``QuerySet.using()``."""
        if alias not in connections:
            raise ValueError(
                f"{self._name}.using({alias!r}): not a database alias "
                f"(choose from {', '.join(sorted(connections))})"
            )
        return CachedAccessor(self.model, alias)

    @property
    def plan(self) -> ModelPlan:
        return plan_for(self.model)

    def get(self, **lookup: Any) -> M:
        """The row matching ``pk=`` or one unique lookup; raises ``Model.DoesNotExist``."""
        plan = plan_for(self.model)
        name, value = self._lookup("get", plan, lookup)
        if tracing.reads:  # TRACING["READS"]: a span around every read, hits included
            return self._traced_get(plan, name, value)
        if name == "pk":
            return reads.get(plan, value, self._db)  # type: ignore[return-value]
        return lookups.get_by_lookup(plan, name, value, self._db)  # type: ignore[return-value]

    def _traced_get(self, plan: ModelPlan, name: str, value: Any) -> M:
        label = plan.keys.label
        if name == "pk":
            return tracing.traced("get", label, reads.get, plan, value, self._db)  # type: ignore[no-any-return]
        get = lookups.get_by_lookup
        return tracing.traced("get", label, get, plan, name, value, self._db)  # type: ignore[no-any-return]

    def get_many(self, pks: Iterable[Any]) -> dict[Any, M]:
        """``{pk: instance}`` for the pks whose rows exist; absent rows are omitted."""
        self._check_pks("get_many", pks)
        plan = plan_for(self.model)
        if tracing.reads:  # TRACING["READS"]
            return tracing.traced("get_many", plan.keys.label, reads.get_many, plan, pks, self._db)  # type: ignore[no-any-return]
        return reads.get_many(plan, pks, self._db)  # type: ignore[return-value]

    def _lookup(self, method: str, plan: ModelPlan, lookup: dict[str, Any]) -> tuple[str, Any]:
        """``("pk", value)`` or ``(lookup field, value)``; a clear TypeError otherwise."""
        if len(lookup) != 1:
            raise TypeError(
                f"{self._name}.{method}() takes exactly one keyword: pk=... or one of "
                f"{self._choices(plan)}; got {sorted(lookup) or 'none'}"
            )
        ((name, value),) = lookup.items()
        if name == "pk" or name == plan.pk_field.name or name == plan.pk_field.attname:
            return "pk", value
        if name in plan.lookup_fields:
            return name, value
        raise TypeError(
            f"{self._name}.{method}(): {name!r} is not the pk or a cached lookup "
            f"(choose from {self._choices(plan)}; declare unique fields in CacheMeta.lookups)"
        )

    def _check_pks(self, method: str, pks: Any) -> None:
        if isinstance(pks, str | bytes) or not isinstance(pks, Iterable):
            raise TypeError(f"{self._name}.{method}() takes an iterable of pks, not {pks!r}")

    async def aget(self, **lookup: Any) -> M:
        """``get()`` for coroutines: a hit is served on the event loop, with no thread."""
        plan = plan_for(self.model)
        if len(lookup) == 1 and "pk" in lookup and not tracing.reads:  # the common case
            return await areads.aget(plan, lookup["pk"], self._db)  # type: ignore[return-value]
        name, value = self._lookup("aget", plan, lookup)
        if tracing.reads:  # TRACING["READS"], as get()
            with tracing.span("get", plan.keys.label):
                return await self._aget(plan, name, value)
        return await self._aget(plan, name, value)

    async def _aget(self, plan: ModelPlan, name: str, value: Any) -> M:
        if name == "pk":
            return await areads.aget(plan, value, self._db)  # type: ignore[return-value]
        return await areads.aget_by_lookup(plan, name, value, self._db)  # type: ignore[return-value]

    async def aget_many(self, pks: Iterable[Any]) -> dict[Any, M]:
        """``get_many()`` for coroutines: the hits are served on the event loop."""
        self._check_pks("aget_many", pks)
        plan = plan_for(self.model)
        if tracing.reads:  # TRACING["READS"], as get_many()
            with tracing.span("get_many", plan.keys.label):
                return await areads.aget_many(plan, pks, self._db)  # type: ignore[return-value]
        return await areads.aget_many(plan, pks, self._db)  # type: ignore[return-value]

    def incr(self, pk: Any, field: str, by: int = 1) -> None:
        """Add ``by`` to a write-behind counter: one Redis round trip, flushed by Celery.

        Reads through ``cached`` include pending increments at once. While Redis is down
        the increment goes to the database directly.
        """
        counters.incr(plan_for(self.model), pk, field, by, self._db)

    def invalidate(self, *pks: Any, using: str | None = None) -> None:
        """Drop rows from the cache (for writes the app cannot see, such as raw SQL);
        ``using``: the database written, by default the router's for writes."""
        plan = plan_for(self.model)
        using = using or self._db
        invalidation.invalidate_pks(self.model, [plan.clean_pk(pk) for pk in pks], using)

    def flush(self, *, using: str | None = None) -> None:
        """Drop the model's whole namespace, O(1) on Redis; old keys expire by TTL;
        ``using``: one database's rows, by default every database's."""
        invalidation.flush(self.model, using or self._db)

    @property
    def _name(self) -> str:
        return f"{self.model._meta.object_name}.cached"

    @staticmethod
    def _choices(plan: ModelPlan) -> str:
        return ", ".join(["pk", *plan.lookup_fields]) or "pk"


class CachedDescriptor:
    """Gives each model class its own :class:`CachedAccessor`, like a manager."""

    def __init__(self) -> None:
        self._accessors: dict[type[models.Model], CachedAccessor[Any]] = {}

    @overload
    def __get__(self, instance: None, owner: type[M]) -> CachedAccessor[M]: ...
    @overload
    def __get__(self, instance: models.Model, owner: type[M]) -> CachedAccessor[M]: ...
    def __get__(self, instance: models.Model | None, owner: type[M]) -> CachedAccessor[M]:
        if instance is not None:
            name = owner.__name__
            raise AttributeError(f"cached isn't accessible via {name} instances; use {name}.cached")
        try:
            return self._accessors[owner]
        except KeyError:
            accessor = self._accessors[owner] = CachedAccessor(owner)
            return accessor
