"""System checks of per-model options, from ``CacheMeta`` or a ``CACHESTRAT["MODELS"]`` entry."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from typing import Any

from django.apps import apps
from django.core.checks import CheckMessage, Error
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from .options import OPTION_NAMES, STRATEGIES, declared_options, is_mixin_model

__all__ = ["NUMBER", "check_models", "check_options", "error", "is_finite", "is_type"]

NUMBER = (int, float)
INTEGER_FIELDS = (models.IntegerField,)  # Small/Big/Positive* subclass it

Model = type[models.Model]


def error(msg: str, hint: str, id: str, obj: Any = None) -> Error:
    """A check error under a ``django_cachestrat.`` id."""
    return Error(msg, hint=hint, obj=obj, id=f"django_cachestrat.{id}")


def unknown_key(where: str, key: Any, valid: Collection[str], id: str) -> Error | None:
    """The error for a key of the settings dict ``where`` that is not one of ``valid``."""
    if key in valid:
        return None
    return error(
        f"{where} has an unknown key {key!r}.", f"Valid keys: {', '.join(sorted(valid))}.", id
    )


def is_type(value: Any, types: tuple[type, ...]) -> bool:
    """``isinstance``, except that ``True`` and ``False`` are not numbers."""
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def is_finite(value: float) -> bool:
    """Whether a number is a finite float: not infinite, NaN, or an int too large for one."""
    try:
        return math.isfinite(value)
    except OverflowError:  # settings are read with float(), which would raise the same
        return False


def check_models(**kwargs: Any) -> list[CheckMessage]:
    """Validate the ``CacheMeta`` of every model that inherits the mixin."""
    errors: list[CheckMessage] = []
    for model in apps.get_models():
        if is_mixin_model(model) and not model._meta.proxy:
            errors += check_options(model, declared_options(model), f"{model.__name__}.CacheMeta")
    return errors


def check_options(model: Model, options: dict[Any, Any], where: str) -> list[Error]:
    """Validate one model's options; ``where`` names the place they were given."""
    errors = []
    for name, value in options.items():
        if name in OPTION_NAMES:
            errors += _CHECKS[name](model, value, where)
        else:
            errors.append(
                error(
                    f"{where} has an unknown option {name!r}.",
                    f"Options: {', '.join(sorted(OPTION_NAMES))}.",
                    "E009",
                    model,
                )
            )
    return errors


def _check_timeout(model: Model, value: Any, where: str) -> list[Error]:
    if value is None or (is_type(value, NUMBER) and is_finite(value) and value > 0):
        return []
    return [
        error(
            f"{where}.timeout must be a finite number greater than 0, not {value!r}.",
            "Seconds, e.g. 3600; leave it out to use TIMEOUT.",
            "E014",
            model,
        )
    ]


def _check_transparent(model: Model, value: Any, where: str) -> list[Error]:
    if isinstance(value, bool):
        return []
    return [
        error(
            f"{where}.transparent must be True or False, not {value!r}.",
            "Use True or False.",
            "E019",
            model,
        )
    ]


def _check_strategy(model: Model, value: Any, where: str) -> list[Error]:
    if value in STRATEGIES:
        return []
    return [
        error(
            f"{where}.strategy {value!r} is not a known strategy.",
            f"Choose one of: {', '.join(STRATEGIES)}.",
            "E012",
            model,
        )
    ]


def _is_names(value: Any) -> bool:
    # NOTE: a str is rejected: it would be read as a sequence of one-letter names.
    return isinstance(value, list | tuple) and all(isinstance(name, str) for name in value)


def _check_names(model: Model, option: str, value: Any, where: str) -> list[Error]:
    if not _is_names(value):
        return [
            error(
                f"{where}.{option} must be a list or tuple of field names, not {value!r}.",
                'Use a tuple such as ("username",).',
                "E020",
                model,
            )
        ]
    check = _check_lookup if option == "lookups" else _check_counter
    return [e for name in value for e in check(model, name, where)]


def _field(model: Model, name: str) -> Any:
    try:
        return model._meta.get_field(name)
    except FieldDoesNotExist:
        return None


def _check_lookup(model: Model, name: str, where: str) -> list[Error]:
    field = _field(model, name)
    if (
        field is not None
        and field.concrete
        and getattr(field, "unique", False)
        and not field.primary_key
    ):
        return []
    return [
        error(
            f"{where}.lookups names {name!r}, which is not a unique field of {model._meta.label}.",
            "Only fields with unique=True (other than the pk) can be served from the cache.",
            "E010",
            model,
        )
    ]


def _check_counter(model: Model, name: str, where: str) -> list[Error]:
    field = _field(model, name)
    if isinstance(field, INTEGER_FIELDS) and not field.primary_key:
        return []
    return [
        error(
            f"{where}.counters names {name!r}, not an integer field of {model._meta.label}.",
            "Write-behind counters must be IntegerField, BigIntegerField or their variants.",
            "E011",
            model,
        )
    ]


#: One check per option name; a test keeps its keys equal to ``OPTION_NAMES``.
_CHECKS: dict[str, Callable[[Model, Any, str], list[Error]]] = {
    "timeout": _check_timeout,
    "transparent": _check_transparent,
    "strategy": _check_strategy,
    "lookups": lambda model, value, where: _check_names(model, "lookups", value, where),
    "counters": lambda model, value, where: _check_names(model, "counters", value, where),
}
