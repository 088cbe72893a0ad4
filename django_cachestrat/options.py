"""Per-model options: ``CacheMeta`` on the model, overridden by ``CACHESTRAT["MODELS"]``."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from django.apps import apps
from django.db import models

from .conf import conf

__all__ = [
    "OPTION_NAMES",
    "STRATEGIES",
    "CacheAsideBase",
    "ModelOptions",
    "Strategy",
    "cached_models",
    "is_cached",
]

Strategy = Literal["invalidate", "write_through"]
STRATEGIES: tuple[Strategy, ...] = ("invalidate", "write_through")


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """What a model's cache does; ``timeout=None`` means the ``TIMEOUT`` setting."""

    timeout: float | None = None
    lookups: tuple[str, ...] = ()
    strategy: Strategy = "invalidate"
    counters: tuple[str, ...] = ()
    transparent: bool = False


OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(ModelOptions))


def declared_options(model: type[models.Model]) -> dict[str, Any]:
    """The public attributes of the model's ``CacheMeta`` class, if any."""
    meta = getattr(model, "CacheMeta", None)
    if meta is None:
        return {}
    return {k: v for k, v in vars(meta).items() if not k.startswith("_")}


def settings_options(model: type[models.Model]) -> dict[str, Any] | None:
    """Options from ``MODELS`` ("*" < "app.*" < "app.Model"), or None if no entry matches."""
    entries = conf.MODELS
    label = model._meta.label
    found = None
    for pattern in ("*", f"{model._meta.app_label}.*", label):
        for key, value in entries.items():
            if key == pattern or key.lower() == pattern.lower():
                found = {**(found or {}), **(value or {})}
    return found


class CacheAsideBase:
    """The mark of a model that opted in by inheritance; ``mixins.CacheAsideMixin`` adds
    ``cached`` to it. Configuration asks for this mark, never for the public facade."""


def is_mixin_model(model: type[models.Model]) -> bool:
    return issubclass(model, CacheAsideBase)


def is_cached(model: type[models.Model]) -> bool:
    """Whether reads of this model may go through the cache (not with a composite pk)."""
    concrete = model._meta.concrete_model or model
    if getattr(concrete._meta, "is_composite_pk", False):
        return False
    if concrete._meta.label_lower == "django_cachestrat.pendinginvalidation":
        return False  # written when Redis is down: caching it would loop on itself
    return is_mixin_model(concrete) or settings_options(concrete) is not None


def options_for(model: type[models.Model]) -> ModelOptions:
    """The merged options of a cached model (checks have validated them)."""
    concrete = model._meta.concrete_model or model
    merged = {**declared_options(concrete), **(settings_options(concrete) or {})}
    values = {k: v for k, v in merged.items() if k in OPTION_NAMES}
    for name in ("lookups", "counters"):
        if name in values:
            values[name] = tuple(values[name])
    return ModelOptions(**values)


def cached_models() -> list[type[models.Model]]:
    """Every installed concrete model whose reads are cached."""
    return [m for m in apps.get_models() if not m._meta.proxy and is_cached(m)]
