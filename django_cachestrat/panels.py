"""A django-debug-toolbar panel: what the cache did for this request, model by model.

Enable it with ``"django_cachestrat.panels.CachestratPanel"`` in ``DEBUG_TOOLBAR_PANELS``
(see ``docs/debug-toolbar.md``). The toolbar's own cache panel wraps Django's cache
handler; the reads here go to Redis directly, so they are recorded by ``requestlog``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable
from typing import Any

from debug_toolbar.panels import Panel
from django.http import HttpRequest, HttpResponse

from . import requestlog
from .breaker import breaker

__all__ = ["CachestratPanel", "breaker_state"]


def breaker_state() -> dict[str, Any]:
    """The circuit breaker as this process sees it now (JSON-safe): ``state`` is
    ``closed``, ``open`` (Redis is skipped) or ``half-open`` (the next call probes)."""
    return {"state": breaker.state, "failures": breaker.failures, "trips": breaker.trips}


class CachestratPanel(Panel):
    """Reads by model (hits, misses, queries saved), leases waited or lost, invalidations
    queued and sent, write-behind increments, and the circuit breaker."""

    title = "Cache strategies"
    nav_title = "Cachestrat"
    template = "django_cachestrat/debug_toolbar/panel.html"
    is_async = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._log = requestlog.RequestLog()

    @property
    def nav_subtitle(self) -> str:
        totals = self.get_stats().get("totals") or {}  # type: ignore[no-untyped-call]
        hits, misses = totals.get("hits", 0), totals.get("misses", 0)
        return f"{hits} hit{'s' * (hits != 1)}, {misses} miss{'es' * (misses != 1)}"

    def process_request(self, request: HttpRequest) -> Any:
        # Recording is set in this request's context only: a thread, or an asyncio task,
        # of its own. Nothing global changes, so concurrent requests never mix figures.
        with requestlog.recording(self._log):
            response = self.get_response(request)
        if inspect.isawaitable(response):  # async: the view runs when this is awaited
            return self._arecord(response)
        return response

    async def _arecord(self, response: Awaitable[HttpResponse]) -> HttpResponse:
        with requestlog.recording(self._log):
            return await response

    def generate_stats(self, request: HttpRequest, response: HttpResponse) -> None:
        # Plain dicts of str and int: the toolbar's store serializes them as JSON.
        self.record_stats({**self._log.as_dict(), "breaker": breaker_state()})  # type: ignore[no-untyped-call]
