"""System checks for ``CACHESTRAT`` and every ``CacheMeta``; ids are listed in docs/checks.md."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import models
from django.utils.module_loading import import_string

from .conf import DEFAULTS
from .options import OPTION_NAMES, STRATEGIES, declared_options, is_mixin_model

__all__ = ["check_models", "check_settings"]

NUMBER = (int, float)
TYPES: dict[str, tuple[type, ...]] = {
    "CACHE_ALIAS": (str,),
    "KEY_PREFIX": (str,),
    "TIMEOUT": NUMBER,
    "JITTER": NUMBER,
    "NEGATIVE_TIMEOUT": NUMBER,
    "FAIL_OPEN": (bool,),
    "MODELS": (dict,),
    "WRITE_BEHIND": (dict,),
    "LEASE_TIMEOUT": NUMBER,
    "LEASE_WAIT": NUMBER,
    "BREAKER_THRESHOLD": (int,),
    "BREAKER_COOLDOWN": NUMBER,
}
NON_NEGATIVE = ("NEGATIVE_TIMEOUT", "LEASE_WAIT", "BREAKER_COOLDOWN")
POSITIVE = ("TIMEOUT", "LEASE_TIMEOUT", "BREAKER_THRESHOLD")
INTEGER_FIELDS = (models.IntegerField,)  # Small/Big/Positive* subclass it


def _error(msg: str, hint: str, id: str, obj: Any = None) -> Error:
    return Error(msg, hint=hint, obj=obj, id=f"django_cachestrat.{id}")


def _is_type(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    return isinstance(value, types)


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.CACHESTRAT``."""
    raw = getattr(settings, "CACHESTRAT", {})
    if not isinstance(raw, dict):
        return [_error("CACHESTRAT must be a dict.", "Set CACHESTRAT = {...}.", "E001")]
    errors: list[CheckMessage] = list(_check_keys(raw))
    errors += _check_cache_alias(raw.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"]))
    errors += _check_write_behind(raw.get("WRITE_BEHIND", {}))
    if isinstance(raw.get("MODELS", {}), dict):
        errors += _check_models_setting(raw.get("MODELS", {}))
    return errors


def _check_keys(raw: dict[str, Any]) -> Iterator[Error]:
    for key, value in raw.items():
        if key not in DEFAULTS:
            yield _error(
                f"CACHESTRAT has an unknown key {key!r}.",
                f"Valid keys: {', '.join(sorted(DEFAULTS))}.",
                "E002",
            )
        elif not _is_type(value, TYPES[key]):
            names = " or ".join(t.__name__ for t in TYPES[key])
            yield _error(
                f"CACHESTRAT[{key!r}] must be {names}, not {type(value).__name__}.",
                f"Default: {DEFAULTS[key]!r}.",
                "E003",
            )
        elif (key in POSITIVE and value <= 0) or (key in NON_NEGATIVE and value < 0):
            bound = "greater than 0" if key in POSITIVE else "0 or more"
            yield _error(
                f"CACHESTRAT[{key!r}] must be {bound}, not {value!r}.",
                f"Default: {DEFAULTS[key]!r}.",
                "E004",
            )
        elif key == "JITTER" and not 0 <= value <= 0.5:
            yield _error(
                f"CACHESTRAT['JITTER'] must be between 0 and 0.5, not {value!r}.",
                "0.1 spreads a 3600 s TTL over 3240-3960 s.",
                "E005",
            )
        elif key == "KEY_PREFIX" and (not value or any(c in value for c in "{} \t\n")):
            yield _error(
                f"CACHESTRAT['KEY_PREFIX'] {value!r} must be non-empty, without braces or spaces.",
                "Braces would break the Redis Cluster hash tags of every key.",
                "E015",
            )


def _check_cache_alias(alias: Any) -> list[Error]:
    if not isinstance(alias, str):
        return []  # reported as a type error
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        return [
            _error(
                f"CACHESTRAT['CACHE_ALIAS'] {alias!r} is not a cache in CACHES.",
                f"Define CACHES[{alias!r}] with BACKEND 'django_redis.cache.RedisCache'.",
                "E006",
            )
        ]
    backend = caches[alias].get("BACKEND", "")
    try:
        from django_redis.cache import RedisCache

        is_redis = issubclass(import_string(backend), RedisCache)
    except ImportError:
        is_redis = False
    if is_redis:
        return []
    return [
        _error(
            f"CACHES[{alias!r}] uses {backend!r}, which is not a django-redis cache.",
            "Set its BACKEND to 'django_redis.cache.RedisCache'.",
            "E007",
        )
    ]


def _check_write_behind(value: Any) -> list[Error]:
    if not isinstance(value, dict):
        return []  # reported as a type error
    errors = []
    for key, item in value.items():
        if key not in DEFAULTS["WRITE_BEHIND"]:
            errors.append(
                _error(
                    f"CACHESTRAT['WRITE_BEHIND'] has an unknown key {key!r}.",
                    f"Valid keys: {', '.join(sorted(DEFAULTS['WRITE_BEHIND']))}.",
                    "E013",
                )
            )
        elif not _is_type(item, NUMBER) or item <= 0:
            errors.append(
                _error(
                    f"CACHESTRAT['WRITE_BEHIND'][{key!r}] must be a number greater than 0.",
                    f"Default: {DEFAULTS['WRITE_BEHIND'][key]!r}.",
                    "E013",
                )
            )
    return errors


def _check_models_setting(entries: dict[str, Any]) -> list[Error]:
    errors = []
    for pattern, options in entries.items():
        if not _pattern_exists(pattern):
            errors.append(
                _error(
                    f"CACHESTRAT['MODELS'] names {pattern!r}, which is not an installed model.",
                    "Use 'app_label.ModelName', 'app_label.*' or '*'.",
                    "E008",
                )
            )
        elif not isinstance(options, dict):
            errors.append(
                _error(
                    f"CACHESTRAT['MODELS'][{pattern!r}] must be a dict of options.",
                    f"Options: {', '.join(sorted(OPTION_NAMES))}.",
                    "E009",
                )
            )
        else:
            for model in _pattern_models(pattern):
                errors += _check_options(model, options, f"CACHESTRAT['MODELS'][{pattern!r}]")
    return errors


def _pattern_models(pattern: str) -> list[type[models.Model]]:
    if pattern == "*":
        return [m for m in apps.get_models() if not m._meta.proxy]
    app_label, _, name = pattern.partition(".")
    if name == "*":
        return [m for m in apps.get_app_config(app_label).get_models() if not m._meta.proxy]
    return [apps.get_model(app_label, name)]


def _pattern_exists(pattern: Any) -> bool:
    if not isinstance(pattern, str):
        return False
    try:
        return bool(_pattern_models(pattern)) or pattern.endswith(".*")
    except (LookupError, ValueError):
        return False


def check_models(**kwargs: Any) -> list[CheckMessage]:
    """Validate the ``CacheMeta`` of every model that inherits the mixin."""
    errors: list[CheckMessage] = []
    for model in apps.get_models():
        if is_mixin_model(model) and not model._meta.proxy:
            errors += _check_options(model, declared_options(model), f"{model.__name__}.CacheMeta")
    return errors


def _check_options(model: type[models.Model], options: dict[str, Any], where: str) -> list[Error]:
    errors = []
    for name, value in options.items():
        if name not in OPTION_NAMES:
            errors.append(
                _error(
                    f"{where} has an unknown option {name!r}.",
                    f"Options: {', '.join(sorted(OPTION_NAMES))}.",
                    "E009",
                    model,
                )
            )
        else:
            errors += _check_option(model, name, value, where)
    return errors


def _check_option(model: type[models.Model], name: str, value: Any, where: str) -> list[Error]:
    if name == "timeout":
        if value is not None and (not _is_type(value, NUMBER) or value <= 0):
            return [_error(f"{where}.timeout must be a number greater than 0.", "", "E014", model)]
        return []
    if name == "transparent":
        if not isinstance(value, bool):
            return [_error(f"{where}.transparent must be True or False.", "", "E014", model)]
        return []
    if name == "strategy":
        if value not in STRATEGIES:
            return [
                _error(
                    f"{where}.strategy {value!r} is not a known strategy.",
                    f"Choose one of: {', '.join(STRATEGIES)}.",
                    "E012",
                    model,
                )
            ]
        return []
    if isinstance(value, str) or not isinstance(value, list | tuple):
        return [
            _error(f"{where}.{name} must be a list or tuple of field names.", "", "E014", model)
        ]
    check = _check_lookup if name == "lookups" else _check_counter
    return [e for field_name in value for e in check(model, field_name, where)]


def _field(model: type[models.Model], name: Any) -> Any:
    try:
        return model._meta.get_field(name)
    except Exception:  # FieldDoesNotExist, or a non-string name
        return None


def _check_lookup(model: type[models.Model], name: Any, where: str) -> list[Error]:
    field = _field(model, name)
    if (
        field is not None
        and field.concrete
        and getattr(field, "unique", False)
        and not field.primary_key
    ):
        return []
    return [
        _error(
            f"{where}.lookups names {name!r}, which is not a unique field of {model._meta.label}.",
            "Only fields with unique=True (other than the pk) can be served from the cache.",
            "E010",
            model,
        )
    ]


def _check_counter(model: type[models.Model], name: Any, where: str) -> list[Error]:
    field = _field(model, name)
    if isinstance(field, INTEGER_FIELDS) and not field.primary_key:
        return []
    return [
        _error(
            f"{where}.counters names {name!r}, not an integer field of {model._meta.label}.",
            "Write-behind counters must be IntegerField, BigIntegerField or their variants.",
            "E011",
            model,
        )
    ]
