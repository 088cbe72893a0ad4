"""Admin for profiles: edits made here invalidate the cached rows; the change page shows the
row's cache status, and the list has an "Invalidate cache for selected profiles" action."""

from django.contrib import admin

from django_cachestrat.admin import CacheInspectionAdminMixin

from .models import Profile


@admin.register(Profile)
class ProfileAdmin(CacheInspectionAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("username", "display_name", "karma", "joined")
    search_fields = ("username", "display_name")
    ordering = ("username",)
