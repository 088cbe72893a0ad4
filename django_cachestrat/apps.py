"""App configuration: the checks are registered and every hook installed in ``ready()``."""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig, apps
from django.core import checks
from django.core.signals import setting_changed

from . import hooks


class CachestratConfig(AppConfig):
    name = "django_cachestrat"
    verbose_name = "Cache strategies"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from .checks import check_counters, check_models, check_settings, check_wiring
        from .checks_counters import check_eviction
        from .checks_reads import check_reads

        checks.register(check_settings, checks.Tags.caches)
        checks.register(check_models, checks.Tags.models)
        checks.register(check_counters, checks.Tags.models)
        checks.register(check_reads, checks.Tags.models)
        checks.register(check_wiring, checks.Tags.models)
        checks.register(check_eviction, checks.Tags.caches)
        setting_changed.connect(_on_setting_changed, dispatch_uid="django_cachestrat.settings")
        hooks.install()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting in ("CACHESTRAT", "CACHES") and apps.ready:
        hooks.reset()
