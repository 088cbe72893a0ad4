"""Admin pages of the cache: the overview, the row inspector and the actions they post."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    QueryDict,
)
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from . import drain, invalidation, overview
from .breaker import Unavailable
from .client import REDIS_ERRORS
from .forms import ActionForm, InspectForm, cached_model
from .inspection import inspect_row, invalidate_rows
from .models import Cache
from .plan import plan_for

__all__ = [
    "ACT_PERMISSION",
    "VIEW_PERMISSION",
    "CacheViews",
    "can_act",
    "can_view",
]

#: Seeing the cache pages: the view permission of write-behind batches (or the change one).
VIEW_PERMISSION = "django_cachestrat.view_counterbatch"
#: Invalidating, flushing a namespace and flushing counters.
ACT_PERMISSION = "django_cachestrat.change_counterbatch"

#: Errors that mean "Redis could not answer": shown on the page, never a server error.
UNAVAILABLE = (Unavailable, *REDIS_ERRORS)


def can_view(user: Any) -> bool:
    return bool(user.has_perm(VIEW_PERMISSION) or user.has_perm(ACT_PERMISSION))


def can_act(user: Any) -> bool:
    return bool(user.has_perm(ACT_PERMISSION))


def _known_model(params: QueryDict) -> None:
    label = params.get("model")
    if label and cached_model(label) is None:
        raise Http404(f"No cached model {label!r}.")


def url_name(name: str) -> str:
    return f"django_cachestrat_cache_{name}"


class CacheViews:
    """The cache pages of one admin site, served by ``CacheAdmin`` (the "Cache" entry)."""

    def __init__(self, site: admin.AdminSite) -> None:
        self.site = site

    def urls(self) -> list[URLPattern]:
        """The pages, under ``<admin>/django_cachestrat/cache/``."""
        wrap = self.site.admin_view  # staff only, CSRF-protected, never cached
        overview = wrap(self.overview)
        return [
            path("", overview, name=url_name("overview")),
            path("", overview, name=url_name("changelist")),  # the admin index links here
            path("inspect/", wrap(self.inspect), name=url_name("inspect")),
            path("act/", wrap(require_POST(self.act)), name=url_name("act")),
        ]

    def moved_urls(self) -> list[URLPattern]:
        """The pages' first URLs, under write-behind batches: the pages redirect to their
        new home (with the query); the action, a POST, is still served."""
        return [
            path("cache/", self.site.admin_view(self._moved("overview"))),
            path("cache/inspect/", self.site.admin_view(self._moved("inspect"))),
            path("cache/act/", self.site.admin_view(require_POST(self.act))),
        ]

    def _moved(self, name: str) -> Any:
        def redirect(request: HttpRequest) -> HttpResponse:
            if not can_view(request.user):  # as the page itself would answer
                raise PermissionDenied
            url = reverse(f"{self.site.name}:{url_name(name)}")
            query = request.META.get("QUERY_STRING", "")
            return HttpResponseRedirect(f"{url}?{query}" if query else url)

        return redirect

    def _context(self, request: HttpRequest, title: str) -> dict[str, Any]:
        request.current_app = self.site.name
        return {
            **self.site.each_context(request),
            "title": title,
            "opts": Cache._meta,
            "app_label": Cache._meta.app_label,
            "can_act": can_act(request.user),
            "overview_url": reverse(f"{self.site.name}:{url_name('overview')}"),
            "inspect_url": reverse(f"{self.site.name}:{url_name('inspect')}"),
            "act_url": reverse(f"{self.site.name}:{url_name('act')}"),
        }

    def overview(self, request: HttpRequest) -> HttpResponse:
        if not can_view(request.user):
            raise PermissionDenied
        context = self._context(request, "Cache overview")
        context.update(figures=overview.gather(), window=overview.WINDOW)
        context.update(worth_ratio=overview.WORTH_RATIO, memory_warning=overview.MEMORY_WARNING)
        return TemplateResponse(request, "admin/django_cachestrat/overview.html", context)

    def inspect(self, request: HttpRequest) -> HttpResponse:
        if not can_view(request.user):
            raise PermissionDenied
        _known_model(request.GET)
        form = InspectForm(request.GET or None)
        context = self._context(request, "Cache inspector")
        context["form"] = form
        if form.is_bound and form.is_valid():
            model = form.cleaned_data["model_class"]
            context["plan"] = plan_for(model)
            if form.cleaned_data["pk"] not in (None, ""):
                context.update(_report(model, form.cleaned_data["pk"]))
        return TemplateResponse(request, "admin/django_cachestrat/inspect.html", context)

    def act(self, request: HttpRequest) -> HttpResponse:
        if not can_act(request.user):
            raise PermissionDenied
        _known_model(request.POST)
        form = ActionForm(request.POST)
        if not form.is_valid():
            return HttpResponseBadRequest(form.errors.as_text())
        data = form.cleaned_data
        model, pk = data["model_class"], data["pk"]
        try:
            messages.success(request, perform(data["action"], model, pk))
        except UNAVAILABLE as exc:
            messages.error(request, f"Redis is unavailable, nothing was done: {exc}")
        except FlushFailed as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(self._next(request, data["next"], model, pk))

    def _next(self, request: HttpRequest, target: str, model: Any, pk: Any) -> str:
        allowed = {request.get_host()}
        if target and url_has_allowed_host_and_scheme(target, allowed, request.is_secure()):
            return target
        query = {"model": model._meta.label_lower, **({"pk": pk} if pk not in (None, "") else {})}
        return reverse(f"{self.site.name}:{url_name('inspect')}") + "?" + urlencode(query)


def _report(model: type[models.Model], pk: Any) -> dict[str, Any]:
    try:
        return {"report": inspect_row(model, pk)}
    except UNAVAILABLE as exc:
        return {"redis_error": str(exc) or type(exc).__name__}


class FlushFailed(Exception):
    """A counter flush failed for some stripes (the others were flushed)."""


def perform(action: str, model: type[models.Model], pk: Any) -> str:
    """Run one inspector action; returns the confirmation shown to the user."""
    label = model._meta.label_lower
    if action == "invalidate":
        invalidate_rows(model, [pk])
        return f"Invalidated {label} #{pk}: the next read fills it from the database."
    if action == "flush":
        invalidation.flush(model)
        return f"Flushed {label}: every cached row of the model now reads as a miss."
    try:
        results = drain.drain_model(model)
    except drain.DrainError as exc:
        raise FlushFailed(f"Flushing the counters of {label} failed: {exc}") from exc
    rows = sum(r.rows for r in results)
    increments = sum(r.increments for r in results)
    return (
        f"Flushed the counters of {label}: {len(results)} batch(es), {rows} row(s), "
        f"{increments} increment(s)."
    )


def status_context(
    site: admin.AdminSite, model: type[models.Model], pk: Any, user: Any
) -> dict[str, Any]:
    """What the cache status box of a change page shows."""
    concrete = model._meta.concrete_model or model
    box: dict[str, Any] = {"is_cached_model": cached_model(concrete._meta.label_lower) is not None}
    if box["is_cached_model"]:
        box.update(_report(concrete, pk))
        box["can_act"] = can_act(user)
        box.update(model_label=concrete._meta.label_lower, pk=pk)
        for name in ("inspect", "act"):
            box[f"{name}_url"] = _reverse_any((site.name, "admin"), url_name(name))
        if box["inspect_url"]:
            query = urlencode({"model": box["model_label"], "pk": pk})
            box["inspect_url"] += "?" + query
    return box


def _reverse_any(namespaces: tuple[str, ...], name: str) -> str | None:
    """The URL in the first admin site that has the cache pages, or None."""
    for namespace in dict.fromkeys(namespaces):
        try:
            return reverse(f"{namespace}:{name}")
        except NoReverseMatch:
            continue
    return None
