"""The view that serves the Prometheus metrics of the app (and of the default registry)."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse

from . import metrics

__all__ = ["prometheus_metrics"]


def prometheus_metrics(request: HttpRequest) -> HttpResponse:
    """The exposition text of :func:`metrics.registry`: every metric of the default
    registry, or in multi-process mode every process's. Protect it as you would the admin
    (it is not public): route it on an internal port or behind your access rules.
    Without ``CACHESTRAT["METRICS"]`` it answers 404."""
    from prometheus_client.exposition import choose_encoder

    if not metrics.is_installed():
        raise Http404("CACHESTRAT['METRICS'] is off.")
    # The format the scraper asks for: OpenMetrics or the Prometheus text format.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(metrics.registry()), content_type=content_type)
