"""Admin for posts: edits invalidate the cached row; counters are left to write-behind."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from django.contrib import admin
from django.http import HttpRequest

from django_cachestrat.admin import CacheInspectionAdminMixin

from .models import Post


@admin.register(Post)
class PostAdmin(CacheInspectionAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ("title", "slug", "published", "likes", "views")
    search_fields = ("title", "slug")
    prepopulated_fields: ClassVar[dict[str, Sequence[str]]] = {"slug": ("title",)}
    readonly_fields = ("likes", "views")
    date_hierarchy = "published"

    def save_model(self, request: HttpRequest, obj: Post, form: Any, change: bool) -> None:
        if change:
            # likes and views move in Redis and reach the row at each flush: save only the
            # fields edited here, so a save never writes back counters read before a flush.
            obj.save(update_fields=form.changed_data)
        else:
            obj.save()
