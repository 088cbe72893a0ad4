"""URLs for the debug toolbar panel tests: the toolbar's own views and views that read Items."""

from __future__ import annotations

import asyncio
import threading

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from tests.testapp.models import Item, Profile

PAGE = "<html><body><p>{}</p></body></html>"

#: Set by a test to hold two requests inside their views at the same time.
barrier: threading.Barrier | None = None
abarrier: asyncio.Barrier | None = None


def _pks(request: HttpRequest) -> list[str]:
    return [pk for pk in request.GET.get("pks", "").split(",") if pk]


def items(request: HttpRequest) -> HttpResponse:
    rows = Item.cached.get_many(_pks(request))
    if barrier is not None:
        barrier.wait()
    return HttpResponse(PAGE.format(len(rows)))


async def aitems(request: HttpRequest) -> HttpResponse:
    rows = await Item.cached.aget_many(_pks(request))
    if abarrier is not None:
        await abarrier.wait()
    more = await Item.cached.aget_many(_pks(request))  # the same rows again: hits
    return HttpResponse(PAGE.format(len(rows) + len(more)))


def by_code(request: HttpRequest, code: str) -> HttpResponse:
    try:
        return HttpResponse(PAGE.format(Item.cached.get(code=code).pk))
    except Item.DoesNotExist:
        return HttpResponse(PAGE.format("none"))


async def aby_code(request: HttpRequest, code: str) -> HttpResponse:
    try:
        return HttpResponse(PAGE.format((await Item.cached.aget(code=code)).pk))
    except Item.DoesNotExist:
        return HttpResponse(PAGE.format("none"))


def write(request: HttpRequest) -> HttpResponse:
    """Two rows saved in one transaction (queued, then sent at commit), and two increments."""
    with transaction.atomic():
        for item in Item.objects.filter(pk__in=_pks(request)):
            item.save()
    for profile in Profile.objects.all():
        Profile.cached.incr(profile.pk, "likes", by=3)
    return HttpResponse(PAGE.format("written"))


urlpatterns = [
    path("items/", items),
    path("aitems/", aitems),
    path("code/<str:code>/", by_code),
    path("acode/<str:code>/", aby_code),
    path("write/", write),
    path("__debug__/", include("debug_toolbar.urls")),
]
