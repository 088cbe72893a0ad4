"""System checks of ``METRICS`` and ``TRACING``: the keys, and the libraries they need."""

from __future__ import annotations

import importlib
from typing import Any

from django.core.checks import CheckMessage

from .checks_options import error, unknown_key
from .conf import DEFAULTS

__all__ = ["check_observability"]


def check_observability(raw: dict[str, Any]) -> list[CheckMessage]:
    """Check ``CACHESTRAT["METRICS"]`` and ``CACHESTRAT["TRACING"]`` (their types are
    checked with the other keys', E003)."""
    errors: list[CheckMessage] = []
    if raw.get("METRICS") is True and not _has("prometheus_client"):
        errors.append(
            error(
                "CACHESTRAT['METRICS'] is True, but prometheus-client is not installed.",
                'Install it with pip install "django-cachestrat[prometheus]".',
                "E190",
            )
        )
    tracing = raw.get("TRACING", {})
    if isinstance(tracing, dict):
        errors += [e for k, v in tracing.items() if (e := _check_tracing(k, v))]
        if tracing.get("ENABLED") is True and not _has("opentelemetry.trace"):
            errors.append(
                error(
                    "CACHESTRAT['TRACING']['ENABLED'] is True, but opentelemetry-api is "
                    "not installed.",
                    'Install it with pip install "django-cachestrat[opentelemetry]".',
                    "E193",
                )
            )
    return errors


def _check_tracing(key: Any, value: Any) -> CheckMessage | None:
    defaults = DEFAULTS["TRACING"]
    if unknown := unknown_key("CACHESTRAT['TRACING']", key, defaults, "E191"):
        return unknown
    if isinstance(value, bool):
        return None
    return error(
        f"CACHESTRAT['TRACING'][{key!r}] must be True or False, not {value!r}.",
        f"Default: {defaults[key]!r}.",
        "E192",
    )


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
