"""URLs for the test suite: the admin, with a cached model's admin using the cache mixin."""

from django.contrib import admin
from django.urls import path

from django_cachestrat.admin import CacheInspectionAdminMixin
from tests.testapp.models import Profile


@admin.register(Profile)
class ProfileAdmin(CacheInspectionAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("username", "age")
    exclude = ("tags",)


urlpatterns = [path("admin/", admin.site.urls)]
