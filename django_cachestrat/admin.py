"""Admin: write-behind records, the cache pages, and a mixin for the admins of cached models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.db import models
from django.http import HttpRequest, HttpResponse
from django.template.loader import select_template
from django.template.response import TemplateResponse
from django.urls import URLPattern

from .admin_views import CacheViews, can_act, can_view, status_context
from .breaker import Unavailable
from .client import REDIS_ERRORS
from .inspection import invalidate_rows
from .models import Cache, CounterBatch, DeadLetter

__all__ = ["CacheAdmin", "CacheInspectionAdminMixin", "CounterBatchAdmin", "DeadLetterAdmin"]

if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[Any]
else:  # ModelAdmin is generic in the type stubs only
    _ModelAdmin = admin.ModelAdmin

#: The change form of a model whose admin uses the mixin: its own form, plus the status box.
STATUS_TEMPLATE = "admin/django_cachestrat/change_form.html"


class _ReadOnlyAdmin(_ModelAdmin):
    """Records written by flushes only: a batch deleted by hand could be applied twice."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Cache)
class CacheAdmin(_ReadOnlyAdmin):
    """The "Cache" entry of the admin index: its page is the cache overview, which leads to
    the inspector. Seen by whoever may see write-behind batches (``can_view``)."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return can_view(request.user)

    def get_urls(self) -> list[URLPattern]:
        return CacheViews(self.admin_site).urls()


@admin.register(CounterBatch)
class CounterBatchAdmin(_ReadOnlyAdmin):
    """Write-behind batches; the cache pages' first URLs, under them, still lead there."""

    list_display = ("applied_at", "model", "stripe", "rows", "increments", "dead_letters")
    list_filter = ("model",)
    date_hierarchy = "applied_at"

    def get_urls(self) -> list[URLPattern]:
        return [*CacheViews(self.admin_site).moved_urls(), *super().get_urls()]


@admin.register(DeadLetter)
class DeadLetterAdmin(_ReadOnlyAdmin):
    """Increments a flush could not apply (the row was deleted, the database refused them)."""

    list_display = ("created_at", "model", "pk_value", "field", "delta", "reason", "batch")
    list_filter = ("model", "field")


class CacheInspectionAdminMixin(_ModelAdmin):
    """For the ``ModelAdmin`` of a cached model: a cache status box on the change page
    (cached? in sync with the database? TTL), and an "Invalidate cache for selected"
    action. Both need the cache permissions (see ``docs/admin.md``)::

        @admin.register(Profile)
        class ProfileAdmin(CacheInspectionAdminMixin, admin.ModelAdmin):
            ...
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Added to this admin's own list, so a subclass's ``actions`` keeps it (and
        # ``actions = None`` still turns every action off).
        if self.actions is not None and "invalidate_cache" not in self.actions:
            self.actions = [*self.actions, "invalidate_cache"]

    def has_invalidate_cache_permission(self, request: HttpRequest) -> bool:
        return can_act(request.user)

    @admin.action(
        description="Invalidate cache for selected %(verbose_name_plural)s",
        permissions=["invalidate_cache"],
    )
    def invalidate_cache(self, request: HttpRequest, queryset: models.QuerySet[Any]) -> None:
        try:
            count = invalidate_rows(self.model, queryset.values_list("pk", flat=True))
        except (Unavailable, *REDIS_ERRORS) as exc:
            self.message_user(request, f"Redis is unavailable: {exc}", messages.ERROR)
            return
        self.message_user(request, f"Invalidated the cache of {count} row(s).", messages.SUCCESS)

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Any = None,
    ) -> HttpResponse:
        response = super().render_change_form(request, context, add, change, form_url, obj)
        show = change and obj is not None and can_view(request.user)
        if show and isinstance(response, TemplateResponse):
            # Extend the template the admin would have used, so the model's own
            # change_form.html overrides still apply.
            names = response.template_name
            parent = select_template(_as_list(names))
            box = status_context(self.admin_site, self.model, obj.pk, request.user)
            response.context_data = {
                **(response.context_data or {}),
                "cachestrat_parent": parent,
                "cachestrat": box,
            }
            response.template_name = STATUS_TEMPLATE
        return response


def _as_list(names: Any) -> list[str]:
    if isinstance(names, str):
        return [names]
    return list(names) if isinstance(names, Sequence) else []
