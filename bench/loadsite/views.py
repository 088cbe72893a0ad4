"""The profile page without our cache (plain ORM read), and a database round-trip probe."""

from __future__ import annotations

import statistics
import time

from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from example_project.accounts.models import Profile


def profile_detail(request: HttpRequest, username: str) -> HttpResponse:
    """``example_project.accounts.views.profile_detail`` with ``objects`` for ``cached``."""
    try:
        profile = Profile.objects.get(username=username)
    except Profile.DoesNotExist:
        raise Http404(f"No profile named {username!r}") from None
    return render(request, "accounts/profile_detail.html", {"profile": profile})


def round_trip(request: HttpRequest) -> JsonResponse:
    """The median time of ``?statements=N`` ``SELECT 1`` through this process's connection."""
    times = []
    with connection.cursor() as cursor:
        for _ in range(int(request.GET.get("statements", "100"))):
            start = time.perf_counter()
            cursor.execute("SELECT 1")
            cursor.fetchone()
            times.append(time.perf_counter() - start)
    return JsonResponse({"median_ms": statistics.median(times) * 1000})
