"""System checks for ``CACHESTRAT``; every id is listed in docs/checks.md."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.db import models
from django.utils.module_loading import import_string

from .checks_counters import check_counters
from .checks_databases import check_databases
from .checks_observability import check_observability
from .checks_options import (
    NUMBER,
    check_models,
    check_options,
    error,
    is_finite,
    is_type,
    unknown_key,
)
from .conf import DEFAULTS
from .options import OPTION_NAMES

__all__ = ["check_counters", "check_models", "check_settings", "check_wiring"]

TYPES: dict[str, tuple[type, ...]] = {
    "CACHE_ALIAS": (str,),
    "CONNECTION": (str, type(None)),
    "KEY_PREFIX": (str,),
    "TIMEOUT": NUMBER,
    "JITTER": NUMBER,
    "NEGATIVE_TIMEOUT": NUMBER,
    "FAIL_OPEN": (bool,),
    "MODELS": (dict,),
    "WRITE_BEHIND": (dict,),
    "EARLY_REFRESH": NUMBER,
    "LEASE_TIMEOUT": NUMBER,
    "LEASE_WAIT": NUMBER,
    "BREAKER_THRESHOLD": (int,),
    "BREAKER_COOLDOWN": NUMBER,
    "REPLICAS": (dict,),
    "REPLICA_LAG": NUMBER,
    "REDIS_REPLICA_WAIT": NUMBER,
    "EXTERNAL_WRITES": (dict,),
    "METRICS": (bool,),
    "TRACING": (dict,),
}
NON_NEGATIVE = ("NEGATIVE_TIMEOUT", "EARLY_REFRESH", "LEASE_WAIT", "BREAKER_COOLDOWN")
POSITIVE = ("TIMEOUT", "LEASE_TIMEOUT", "BREAKER_THRESHOLD", "REPLICA_LAG", "REDIS_REPLICA_WAIT")
WRITE_BEHIND_INTEGERS = ("BATCH_SIZE", "STRIPES")
# NOTE: braces in the prefix would move the Redis Cluster hash tag of every key, and glob
# characters would make the SCAN pattern of one model match the keys of others.
GLOB_CHARACTERS = "*?[]\\"


def check_wiring(**kwargs: Any) -> list[CheckMessage]:
    """Report a failure to install the app's hooks, which would leave models unwatched."""
    from .hooks import failure

    exc = failure()
    if exc is None:
        return []
    return [
        error(
            f"django_cachestrat could not wire its cached models: "
            f"{type(exc).__name__}: {exc}. Their writes are not invalidated.",
            "Fix the other django_cachestrat errors first; the traceback is in the log.",
            "E021",
        )
    ]


def check_settings(**kwargs: Any) -> list[CheckMessage]:
    """Validate ``settings.CACHESTRAT``, including the options of every ``MODELS`` entry."""
    raw = getattr(settings, "CACHESTRAT", {})
    if not isinstance(raw, dict):
        return [error("CACHESTRAT must be a dict.", "Set CACHESTRAT = {...}.", "E001")]
    errors: list[CheckMessage] = [e for k, v in raw.items() if (e := _check_key(k, v))]
    connection = raw.get("CONNECTION")
    if connection:  # the cache alias is only used for its connection: no django-redis needed
        errors += _check_connection(connection)
    else:
        errors += _check_cache_alias(raw.get("CACHE_ALIAS", DEFAULTS["CACHE_ALIAS"]))
    errors += check_databases(raw)
    errors += check_observability(raw)
    write_behind = raw.get("WRITE_BEHIND", {})
    if isinstance(write_behind, dict):
        errors += [e for k, v in write_behind.items() if (e := _check_write_behind(k, v))]
    entries = raw.get("MODELS", {})
    if isinstance(entries, dict):
        errors += [e for k, v in entries.items() for e in _check_models_entry(k, v)]
    return errors


def _check_key(key: Any, value: Any) -> Error | None:
    if unknown := unknown_key("CACHESTRAT", key, DEFAULTS, "E002"):
        return unknown
    if not is_type(value, TYPES[key]):
        names = " or ".join(t.__name__ for t in TYPES[key])
        return error(
            f"CACHESTRAT[{key!r}] must be {names}, not {type(value).__name__}.",
            f"Default: {DEFAULTS[key]!r}.",
            "E003",
        )
    if key in POSITIVE or key in NON_NEGATIVE:
        return _check_range(key, value)
    if key == "JITTER":
        return _check_jitter(value)
    if key == "KEY_PREFIX":
        return _check_key_prefix(value)
    return None


def _check_range(key: str, value: float) -> Error | None:
    if not is_finite(value):
        bound = "a finite number"
    elif key in POSITIVE and value <= 0:
        bound = "greater than 0"
    elif key in NON_NEGATIVE and value < 0:
        bound = "0 or more"
    else:
        return None
    return error(
        f"CACHESTRAT[{key!r}] must be {bound}, not {value!r}.",
        f"Default: {DEFAULTS[key]!r}.",
        "E004",
    )


def _check_jitter(value: float) -> Error | None:
    if 0 <= value <= 0.5:  # NaN fails both comparisons
        return None
    return error(
        f"CACHESTRAT['JITTER'] must be between 0 and 0.5, not {value!r}.",
        "0.1 spreads a 3600 s TTL over 3240-3960 s.",
        "E005",
    )


def _check_key_prefix(value: str) -> Error | None:
    if value and not any(c.isspace() or c in "{}" + GLOB_CHARACTERS for c in value):
        return None
    return error(
        f"CACHESTRAT['KEY_PREFIX'] {value!r} must be non-empty, without whitespace, "
        f"braces or the glob characters {GLOB_CHARACTERS}.",
        "Use a prefix such as 'shop' or 'shop:v2': braces would break the Redis Cluster "
        "hash tags of every key, and glob characters the SCAN patterns that find them.",
        "E015",
    )


def _check_connection(path: Any) -> list[Error]:
    if not isinstance(path, str):
        return []  # reported as a type error
    try:
        factory = import_string(path)
    except ImportError as exc:
        return [
            error(
                f"CACHESTRAT['CONNECTION'] {path!r} cannot be imported: {exc}",
                "Give the dotted path of a function that returns a redis-py client.",
                "E160",
            )
        ]
    if not callable(factory) or (isinstance(factory, type) and not _is_client_class(factory)):
        return [
            error(
                f"CACHESTRAT['CONNECTION'] {path!r} is a {type(factory).__name__}, not a "
                "zero-argument callable that returns a redis-py client.",
                "Point it at a function such as `def cache_client(): return Redis(...)`.",
                "E161",
            )
        ]
    return []


def _is_client_class(value: type) -> bool:
    """A client class called with no arguments (``redis.Redis``: localhost:6379) works."""
    from redis import Redis
    from redis.cluster import RedisCluster

    return issubclass(value, Redis | RedisCluster)


def _check_cache_alias(alias: Any) -> list[Error]:
    if not isinstance(alias, str):
        return []  # reported as a type error
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        return [
            error(
                f"CACHESTRAT['CACHE_ALIAS'] {alias!r} is not a cache in CACHES.",
                f"Define CACHES[{alias!r}] with BACKEND 'django_redis.cache.RedisCache'.",
                "E006",
            )
        ]
    config = caches[alias]
    backend = config.get("BACKEND", "") if isinstance(config, dict) else None
    if _is_django_redis(backend):
        return []
    return [
        error(
            f"CACHES[{alias!r}] uses {backend!r}, which is not a django-redis cache.",
            "Set its BACKEND to 'django_redis.cache.RedisCache'.",
            "E007",
        )
    ]


def _is_django_redis(backend: Any) -> bool:
    """Whether ``backend`` is the dotted path of django-redis's cache class or a subclass."""
    if not isinstance(backend, str):
        return False
    try:
        from django_redis.cache import RedisCache

        found = import_string(backend)
    except ImportError:
        return False
    # NOTE: a path may name a module or a function ("django_redis.cache"), not a class.
    return isinstance(found, type) and issubclass(found, RedisCache)


def _check_write_behind(key: Any, value: Any) -> Error | None:
    if unknown := unknown_key("CACHESTRAT['WRITE_BEHIND']", key, DEFAULTS["WRITE_BEHIND"], "E013"):
        return unknown
    integer = key in WRITE_BEHIND_INTEGERS
    if is_type(value, (int,) if integer else NUMBER) and is_finite(value) and value > 0:
        return None
    kind = "an int" if integer else "a finite number"
    return error(
        f"CACHESTRAT['WRITE_BEHIND'][{key!r}] must be {kind} greater than 0, not {value!r}.",
        f"Default: {DEFAULTS['WRITE_BEHIND'][key]!r}.",
        "E018",
    )


def _check_models_entry(pattern: Any, options: Any) -> list[Error]:
    found = _pattern_models(pattern)
    if found is None:
        return [
            error(
                f"CACHESTRAT['MODELS'] names {pattern!r}, which is not an installed model.",
                "Use 'app_label.ModelName', 'app_label.*' or '*'.",
                "E008",
            )
        ]
    errors = [_proxy_error(pattern, model) for model in found if model._meta.proxy]
    where = f"CACHESTRAT['MODELS'][{pattern!r}]"
    if not isinstance(options, dict):
        return [
            *errors,
            error(
                f"{where} must be a dict of options, not {type(options).__name__}.",
                f"Use a dict such as {{'timeout': 600}}; "
                f"options: {', '.join(sorted(OPTION_NAMES))}.",
                "E017",
            ),
        ]
    return errors + [e for model in found for e in check_options(model, options, where)]


def _pattern_models(pattern: Any) -> list[type[models.Model]] | None:
    """The models a ``MODELS`` key names, or None if it names none.

    Labels match case-insensitively, as they do when the options are read at run time.
    """
    if not isinstance(pattern, str):
        return None
    if pattern == "*":
        return [m for m in apps.get_models() if not m._meta.proxy]
    app_label, _, name = pattern.lower().partition(".")
    configs = [c for c in apps.get_app_configs() if c.label.lower() == app_label]
    if not configs:
        return None
    if name == "*":
        return [m for c in configs for m in c.get_models() if not m._meta.proxy]
    return [c.models[name] for c in configs if name in c.models] or None


def _proxy_error(pattern: str, model: type[models.Model]) -> Error:
    concrete = model._meta.concrete_model or model
    return error(
        f"CACHESTRAT['MODELS'] names {pattern!r}, a proxy model: its options are never read, "
        f"since a proxy is cached as its concrete model.",
        f"Name the concrete model instead: {concrete._meta.label!r}.",
        "E016",
        model,
    )
