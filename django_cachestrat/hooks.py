"""Every hook the app puts into Django, installed and removed in one place.

``install()`` (from ``AppConfig.ready()``) and ``uninstall()`` are symmetric, and
``reset()`` (a settings change, or a test) forgets what was built from the settings and
installs again. A failure is never hidden: it is logged, and system check
``django_cachestrat.E021`` reports it at startup.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections, models
from django.db.backends.signals import connection_created

__all__ = ["failure", "install", "reset", "uninstall"]

logger = logging.getLogger("django_cachestrat")

_UID = "django_cachestrat.statements"
_REPLICAS_UID = "django_cachestrat.replicas"
_accessors: list[type[models.Model]] = []  # settings-named models given ``cached`` here
_failure: list[BaseException] = []


def install() -> None:
    """Keep missed invalidations in the database, watch every connection's statements,
    give settings-named models a ``cached`` accessor, connect the model receivers and
    make transparent models' managers transparent."""
    from . import client, durable, eviction, replicas, statements, transparent
    from .accessor import CachedDescriptor
    from .invalidation import connect_receivers
    from .options import cached_models

    uninstall()
    durable.install()
    client.on_connect.append(eviction.warn_at_startup)
    connection_created.connect(statements.install, dispatch_uid=_UID)
    connection_created.connect(replicas.warn_undeclared, dispatch_uid=_REPLICAS_UID)
    for conn in connections.all(initialized_only=True):
        statements.install(conn)
    try:
        for model in cached_models():
            if not hasattr(model, "cached"):
                model.cached = CachedDescriptor()  # type: ignore[attr-defined]
                _accessors.append(model)
        connect_receivers()
        transparent.install()
    except Exception as exc:  # reported by check E021, with the settings checks' own ids
        logger.exception("django_cachestrat could not wire its cached models")
        _failure.append(exc)
        _unwire_models()
    _install_exports()


def _install_exports() -> None:
    """Metrics and tracing, apart: a library they need that is missing (checks E190,
    E193) must not leave the cached models unwatched."""
    from . import client, metrics, tracing
    from .conf import conf

    try:
        tracing.configure(conf.TRACING["ENABLED"], conf.TRACING["READS"], client.connection)
        if conf.METRICS:
            metrics.install()
    except Exception:
        logger.exception("django_cachestrat could not install its metrics or tracing")


def uninstall() -> None:
    """Take every hook out again; the app then does nothing."""
    from . import client, durable, metrics, replicas, statements, tracing

    _unwire_models()
    tracing.configure(False)
    metrics.uninstall()
    client.on_connect.clear()
    connection_created.disconnect(statements.install, dispatch_uid=_UID)
    connection_created.disconnect(replicas.warn_undeclared, dispatch_uid=_REPLICAS_UID)
    for conn in connections.all(initialized_only=True):
        statements.uninstall(conn)
    durable.uninstall()
    _failure.clear()


def _unwire_models() -> None:
    from . import transparent
    from .invalidation import disconnect_receivers

    transparent.uninstall()
    disconnect_receivers()
    for model in _accessors:
        delattr(model, "cached")
    _accessors.clear()


def reset(**kwargs: Any) -> None:
    """Forget everything derived from the settings, then install again."""
    from . import client, invalidation, plan, replicas, statements

    plan.reset_plans()
    replicas.forget_checked()
    client.reset()
    invalidation.reset()
    statements.reset()
    install()


def failure() -> BaseException | None:
    """The error that kept the app from wiring its cached models, if any."""
    return _failure[0] if _failure else None
