"""Admin for profiles: edits made here invalidate the cached rows."""

from django.contrib import admin

from .models import Profile


@admin.register(Profile)
class ProfileAdmin(admin.ModelAdmin):  # type: ignore[type-arg]  # generic in the stubs only
    list_display = ("username", "display_name", "karma", "joined")
    search_fields = ("username", "display_name")
    ordering = ("username",)
