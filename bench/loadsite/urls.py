"""The example project's URLs; the profile page's view is the variant's."""

from __future__ import annotations

from django.conf import settings
from django.urls import URLPattern, URLResolver, path

from example_project.accounts import views as example_views
from example_project.urls import urlpatterns as example_patterns

from . import views

_profile_view = (
    example_views.profile_detail if settings.LOAD_VARIANT == "cachestrat" else views.profile_detail
)

urlpatterns: list[URLPattern | URLResolver] = [
    path("u/<str:username>/", _profile_view, name="profile-detail"),
    path("_load/round-trip/", views.round_trip, name="load-round-trip"),
    *(p for p in example_patterns if getattr(p, "name", None) != "profile-detail"),
]
