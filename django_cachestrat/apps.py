"""App configuration: checks, receivers and the ``cached`` accessor are wired in ``ready()``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.signals import setting_changed


class CachestratConfig(AppConfig):
    name = "django_cachestrat"
    verbose_name = "Cache strategies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .checks import check_counters, check_models, check_settings
        from .checks_counters import check_eviction
        from .checks_reads import check_reads

        checks.register(check_settings, checks.Tags.caches)
        checks.register(check_models, checks.Tags.models)
        checks.register(check_counters, checks.Tags.models)
        checks.register(check_reads, checks.Tags.models)
        checks.register(check_eviction, checks.Tags.caches)
        setting_changed.connect(_on_setting_changed, dispatch_uid="django_cachestrat.settings")
        wire()


def wire() -> None:
    """Give settings-named models a ``cached`` accessor, connect the receivers and watch
    every database connection for writes that send no signal."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    from . import statements, transparent
    from .accessor import CachedDescriptor
    from .invalidation import connect_receivers
    from .options import cached_models

    connection_created.connect(statements.install, dispatch_uid="django_cachestrat.statements")
    for conn in connections.all(initialized_only=True):
        statements.install(conn)

    try:
        for model in cached_models():
            if not hasattr(model, "cached"):
                model.cached = CachedDescriptor()  # type: ignore[attr-defined]
        connect_receivers()
        transparent.install()
    except Exception:  # invalid settings: `manage.py check` reports them with an id
        transparent.uninstall()


def reset() -> None:
    """Forget everything derived from settings."""
    from . import client, invalidation, plan, statements

    plan.reset_plans()
    client.reset()
    invalidation.reset()
    statements.reset()
    wire()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("CACHESTRAT", "CACHES") and apps.ready:
        reset()
