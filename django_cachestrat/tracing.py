"""OpenTelemetry spans around misses, fills, invalidations and flushes, when switched on.

``CACHESTRAT["TRACING"]`` switches them on; ``hooks.py`` calls :func:`configure` at startup
and on every settings change, so a call site pays one module attribute test while they
are off, and the hit path pays nothing unless ``READS`` asks for a span per read. Only
``opentelemetry-api`` is needed: the application configures its SDK and exporters.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from .conf import conf

__all__ = ["annotate", "configure", "enabled", "invalidation_span", "reads", "span", "traced"]

#: Spans on misses, fills, invalidation sends, write-behind flushes and outside writes.
enabled = False
#: A span around every ``Model.cached`` read too, hits included.
reads = False
_tracer: Any = None
_client: Callable[[], Any] | None = None  # the Redis client, for server.address and port
_NOTHING = contextlib.nullcontext()


def configure(on: bool, read_spans: bool = False, client: Callable[[], Any] | None = None) -> None:
    """Switch spans on or off (``hooks.install()`` does it from the settings); ``client``
    returns the Redis client (handed over: this module sits below the Redis layer)."""
    global enabled, reads, _tracer, _client
    if on:
        from opentelemetry import trace

        _tracer = trace.get_tracer("django_cachestrat")
    enabled, reads, _client = on, on and read_spans, client


def span(operation: str, model: str | None = None, attributes: dict[str, Any] | None = None) -> Any:
    """A context manager: a span while tracing is on, else nothing at all.

    The span is named ``cachestrat.<operation>``; per the database semantic conventions
    ``db.system.name`` is ``redis`` and ``db.operation.name`` the operation; ``model``
    (``app_label.model``) becomes ``cachestrat.model``. An exception leaving the span sets
    its status to ERROR, with ``error.type`` its class name, and goes on; but
    ``Model.DoesNotExist`` is a read's answer and leaves the status unset.
    """
    if not enabled:
        return _NOTHING
    return _span(operation, model, attributes or {})


@contextlib.contextmanager
def _span(operation: str, model: str | None, given: dict[str, Any]) -> Iterator[Any]:
    from opentelemetry.trace import Status, StatusCode

    attributes = {"db.system.name": "redis", "db.operation.name": operation, **_server()}
    attributes.update((k, v) for k, v in given.items() if v is not None)
    if model is not None:
        attributes["cachestrat.model"] = model
    # NOTE: record_exception and set_status_on_exception are off: the error is recorded
    # once, below, with the semantic conventions' error.type.
    with _tracer.start_as_current_span(
        f"cachestrat.{operation}",
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as current:
        try:
            yield current
        except ObjectDoesNotExist:
            raise  # "no such row" is a read's answer, as from the ORM, not a failure
        except BaseException as exc:
            current.set_attribute("error.type", type(exc).__qualname__)
            current.set_status(Status(StatusCode.ERROR, str(exc) or type(exc).__name__))
            current.record_exception(exc)
            raise


def traced(operation: str, model: str, func: Callable[..., Any], *args: Any) -> Any:
    """``func(*args)`` in a span (the reads of ``TRACING["READS"]``)."""
    with span(operation, model):
        return func(*args)


def annotate(current: Any, attributes: dict[str, Any]) -> None:
    """Add attributes known only at the end of a span (``current`` is None when off)."""
    if current is not None:
        current.set_attributes(attributes)


def invalidation_span(keys: Collection[str], generations: Collection[str]) -> Any:
    """The span of one invalidation send, with the models its keys belong to."""
    if not enabled:
        return _NOTHING
    attributes = {
        "cachestrat.models": sorted(_models_of([*keys, *generations])),
        "cachestrat.keys": len(keys),
        "cachestrat.generations": len(generations),
    }
    return _span("invalidate", None, attributes)


def _models_of(keys: list[str]) -> set[str]:
    # Keys are "{prefix}:{app_label.model}[@alias]:..." (keys.py), with the prefix's own
    # colons, if any, before the label.
    start = len(conf.KEY_PREFIX) + 1
    return {key[start:].split(":", 1)[0].split("@", 1)[0] for key in keys}


def _server() -> dict[str, Any]:
    """``server.address``, ``server.port`` and ``db.namespace`` of a single-server client;
    nothing for a cluster, whose node depends on the key."""
    try:
        client = _client() if _client is not None else None
    except Exception:  # the span goes on without them; the call itself reports the error
        return {}
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None) or {}
    if "host" not in kwargs:
        return {}
    # db.namespace: for Redis, the database index, as text.
    return {
        "server.address": kwargs["host"],
        "server.port": kwargs.get("port"),
        "db.namespace": str(kwargs.get("db", 0)),
    }
