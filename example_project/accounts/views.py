"""Profile pages, read through ``Profile.cached``."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Profile

LIST_SIZE = 20


def profile_list(request: HttpRequest) -> HttpResponse:
    """The top profiles by karma: one query for the pks, the rows from the cache."""
    pks = list(Profile.objects.order_by("-karma", "pk").values_list("pk", flat=True)[:LIST_SIZE])
    rows = Profile.cached.get_many(pks)
    profiles = [rows[pk] for pk in pks if pk in rows]
    return render(request, "accounts/profile_list.html", {"profiles": profiles})


def profile_detail(request: HttpRequest, username: str) -> HttpResponse:
    """One profile, found by username without a query once it is cached."""
    try:
        profile = Profile.cached.get(username=username)
    except Profile.DoesNotExist:
        raise Http404(f"No profile named {username!r}") from None
    return render(request, "accounts/profile_detail.html", {"profile": profile})
