"""The per-model plan: keys, codec and options, built once and rebuilt when settings change."""

from __future__ import annotations

import random
from typing import Any, cast

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import DEFAULT_DB_ALIAS, models
from django.db.models.functions import Cast

from .conf import conf, primary_of
from .keys import KeySpace
from .options import ModelOptions, options_for
from .serializers import Codec, json_text_name
from .stats import stats_for

__all__ = ["ModelPlan", "has_collation", "plan_for", "reset_plans"]

POSITIVE_FIELDS = (
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)


def has_collation(field: Any) -> bool:
    """Whether the database compares the field's values under a collation of its own
    (``db_collation``), which may find equal what the cache keys apart: "ABC" and "abc"
    under a case-insensitive one. Whether it is deterministic cannot be told from the
    model, so any collation counts."""
    target = getattr(field, "target_field", None) if field.is_relation else None
    return bool(getattr(target or field, "db_collation", None))


class ModelPlan:
    """Everything the read and write paths need about one model, computed once."""

    def __init__(self, model: type[models.Model]) -> None:
        self.model = model
        meta = model._meta
        self.concrete = meta.concrete_model or model
        self.options: ModelOptions = options_for(model)
        self.keys = KeySpace(conf.KEY_PREFIX, model)  # the default database's rows
        self._spaces: dict[str, KeySpace] = {DEFAULT_DB_ALIAS: self.keys}
        # Replica alias -> primary alias; writes on a primary mark what they delete, so a
        # fill that reads a lagging replica knows to read the primary (see replicas.py).
        self.replicas = conf.REPLICAS
        self.primaries = frozenset(self.replicas.values())
        self.lag_ms = max(1, int(conf.REPLICA_LAG * 1000))
        self.codec = Codec(model)
        self.pk_field = meta.pk
        # An int is its own clean value for a plain integer pk: clean_pk() skips to_python().
        self.int_pk = type(meta.pk).to_python is models.IntegerField.to_python
        self.lookup_fields: dict[str, models.Field[Any, Any]] = {
            name: cast("models.Field[Any, Any]", meta.get_field(name))
            for name in self.options.lookups
        }
        # Compared under a collation of their own: read from the database, never cached.
        self.pk_inexact = has_collation(meta.pk)
        self.inexact_lookups = frozenset(
            name for name, field in self.lookup_fields.items() if has_collation(field)
        )
        self.does_not_exist: type[ObjectDoesNotExist] = model.DoesNotExist  # type: ignore[attr-defined]
        timeout = self.options.timeout
        self.timeout = conf.TIMEOUT if timeout is None else float(timeout)
        self.negative_timeout = conf.NEGATIVE_TIMEOUT
        self.jitter = conf.JITTER
        self.lease_ms = max(1, int(conf.LEASE_TIMEOUT * 1000))
        self.lease_wait = conf.LEASE_WAIT
        self.early_refresh = conf.EARLY_REFRESH
        write_behind = conf.WRITE_BEHIND
        self.stripes = int(write_behind["STRIPES"])
        self.batch_size = int(write_behind["BATCH_SIZE"])
        self.positive_counters = frozenset(
            name
            for name in self.options.counters
            if isinstance(meta.get_field(name), POSITIVE_FIELDS)
        )
        self.counter_attnames = {
            name: str(getattr(meta.get_field(name), "attname", name))
            for name in self.options.counters
        }
        self.counter_bounds: dict[tuple[str, str], tuple[int, int]] = {}  # (field, alias)
        self.stats = stats_for(self.keys.label)
        self._fill_bases: dict[str, models.QuerySet[models.Model]] = {}

    def space(self, using: str) -> KeySpace:
        """The keys of this model's rows in the database ``using`` reads: a replica's rows
        are its primary's, so they share the primary's keys (and its invalidations)."""
        try:
            return self._spaces[using]
        except KeyError:
            database = primary_of(using)
            space = self._spaces.get(database) or KeySpace(conf.KEY_PREFIX, self.model, database)
            self._spaces[database] = self._spaces[using] = space
            return space

    def ttl_ms(self, timeout: float | None = None) -> int:
        """A TTL drawn uniformly in ``timeout * (1 ± JITTER)``, so hot keys spread out."""
        base = self.timeout if timeout is None else timeout
        spread = base * self.jitter
        return max(1, int((base + random.uniform(-spread, spread)) * 1000))

    def rows(self, using: str) -> models.QuerySet[models.Model]:
        """Every row of the table, whatever the model's managers filter: a row is cached
        by pk, once for every manager and proxy that reads it."""
        return models.QuerySet(self.model, using=using)

    def fill_rows(self, using: str, pks: list[Any]) -> models.QuerySet[models.Model]:
        """The rows of ``pks`` from :meth:`rows`, plus the database's own text of every JSON
        field, which the codec stores: a hit then decodes exactly what a database read
        decodes."""
        try:
            base = self._fill_bases[using]
        except KeyError:
            # Built once per database: annotating costs more than the rest of the query.
            # Filtering clones it, so the kept queryset is never evaluated or changed.
            base = self._fill_bases[using] = self._fill_base(using)
        return base.filter(pk=pks[0]) if len(pks) == 1 else base.filter(pk__in=pks)

    def _fill_base(self, using: str) -> models.QuerySet[models.Model]:
        rows = self.rows(using).order_by()  # matched by pk: Meta.ordering would be a sort
        texts = {
            json_text_name(f.attname): Cast(f.name, models.TextField())
            for _, f in self.codec.json_fields
        }
        return rows.annotate(**texts) if texts else rows

    def is_positive(self, counter: str) -> bool:
        """Whether a counter never goes below zero (a Positive*IntegerField)."""
        return counter in self.positive_counters

    def clean_pk(self, value: Any) -> Any:
        if type(value) is int and self.int_pk:
            return value  # what IntegerField.to_python() returns for it
        return self.clean(self.pk_field, value)

    def clean(self, field: Any, value: Any) -> Any:
        """Normalise a lookup value the way the ORM would, or raise a clear ValueError."""
        if isinstance(value, models.Model):
            value = value.pk
        try:
            return field.to_python(value)
        except ValidationError as exc:
            raise ValueError(
                f"{self.model._meta.label}.cached: {field.name}={value!r} is not a valid "
                f"value for {type(field).__name__} {field.name!r} ({'; '.join(exc.messages)})"
            ) from None


_plans: dict[type[models.Model], ModelPlan] = {}


def plan_for(model: type[models.Model]) -> ModelPlan:
    try:
        return _plans[model]
    except KeyError:
        plan = _plans[model] = ModelPlan(model)
        return plan


def reset_plans() -> None:
    _plans.clear()
