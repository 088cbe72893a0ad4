"""An ASGI app whose views read through ``aget``, served by uvicorn in the async tests.

``python -m uvicorn tests.asgi_app:application``; it is its own URLconf.
"""

from __future__ import annotations

import os
import threading
from collections import Counter

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
os.environ["CACHESTRAT_TEST_URLCONF"] = __name__

from django.core.asgi import get_asgi_application
from django.db.models.signals import post_init
from django.http import HttpRequest, JsonResponse
from django.urls import path

application = get_asgi_application()

from django_cachestrat.plan import plan_for  # noqa: E402 - after django.setup()
from tests.testapp.models import Item, Team  # noqa: E402

#: The threads on which Team rows were built, and how often.
built_on: Counter[str] = Counter()


def _built(sender: type[Team], **kwargs: object) -> None:
    built_on[threading.current_thread().name] += 1


post_init.connect(_built, sender=Team, weak=False)


async def team(request: HttpRequest, pk: int) -> JsonResponse:
    row = await Team.cached.aget(pk=pk)
    return JsonResponse({"pk": row.pk, "name": row.name})


async def item(request: HttpRequest, code: str) -> JsonResponse:
    row = await Item.cached.aget(code=code)
    return JsonResponse({"pk": str(row.pk), "code": row.code})


async def teams(request: HttpRequest) -> JsonResponse:
    pks = [int(pk) for pk in request.GET["pks"].split(",")]
    rows = await Team.cached.aget_many(pks)
    return JsonResponse({str(pk): row.name for pk, row in rows.items()})


def figures(request: HttpRequest) -> JsonResponse:
    stats = plan_for(Team).stats
    names = ("hits", "misses", "fills", "db_fallbacks", "lease_waits")
    return JsonResponse({**{n: getattr(stats, n) for n in names}, "built_on": dict(built_on)})


urlpatterns = [
    path("team/<int:pk>", team),
    path("item/<str:code>", item),
    path("teams", teams),
    path("figures", figures),
]
