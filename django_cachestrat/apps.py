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
        from .checks import check_models, check_settings

        checks.register(check_settings, checks.Tags.caches)
        checks.register(check_models, checks.Tags.models)
        setting_changed.connect(_on_setting_changed, dispatch_uid="django_cachestrat.settings")
        wire()


def wire() -> None:
    """Give settings-named models a ``cached`` accessor and connect the receivers."""
    from .accessor import CachedDescriptor
    from .invalidation import connect_receivers
    from .options import cached_models

    try:
        models_ = cached_models()
    except Exception:  # invalid settings: the system checks report them
        return
    for model in models_:
        if "cached" not in vars(model) and not hasattr(model, "cached"):
            model.cached = CachedDescriptor()  # type: ignore[attr-defined]
    connect_receivers()


def reset() -> None:
    """Forget everything derived from settings."""
    from . import client, invalidation, plan

    plan.reset_plans()
    client.reset()
    invalidation.reset()
    wire()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("CACHESTRAT", "CACHES") and apps.ready:
        reset()
