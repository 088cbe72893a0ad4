"""URLs for the test suite: the admin, with a cached model's admin using the cache mixin."""

import os

from django.contrib import admin
from django.http import HttpRequest, JsonResponse
from django.urls import path

from django_cachestrat.admin import CacheInspectionAdminMixin
from django_cachestrat.metrics_views import prometheus_metrics
from tests.testapp.models import Profile, Team


@admin.register(Profile)
class ProfileAdmin(CacheInspectionAdminMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ("username", "age")
    exclude = ("tags",)


def team(request: HttpRequest, pk: int) -> JsonResponse:
    """One cached read, and which process served it
    (tests/observability/test_metrics_gunicorn.py)."""
    return JsonResponse({"name": Team.cached.get(pk=pk).name, "pid": os.getpid()})


urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", prometheus_metrics),
    path("team/<int:pk>", team),
]
