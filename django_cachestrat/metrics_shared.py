"""Prometheus figures every process shares, read from Redis and the database at scrape time.

Write-behind backlogs, dead letters and each Redis server's memory are the same whichever
process answers the scrape, so they are read there, once per scrape, instead of being
counted by every process (they would then be added up in multi-process mode).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.db.models import Count

from .breaker import Unavailable
from .client import REDIS_ERRORS, topology
from .failopen import fail_open
from .models import DeadLetter
from .overview import write_behind

__all__ = ["SharedCollector"]

logger = logging.getLogger("django_cachestrat")


class SharedCollector:
    """A prometheus-client collector of the shared figures; a failure to read them shows
    as ``cachestrat_redis_up 0`` (or missing database figures), never as a failed scrape."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily(
            "cachestrat_redis_up", "1 when Redis answered this scrape's questions."
        )
        try:
            yield from _redis_figures()
            up.add_metric([], 1)
        except (Unavailable, *REDIS_ERRORS) as exc:
            logger.debug("No Redis figures for this scrape: %s", exc)
            up.add_metric([], 0)
        yield up
        for part in (_write_behind, _dead_letters):
            try:
                yield from list(part())
            except Exception as exc:  # a scrape shows what it can
                logger.warning("Some django_cachestrat figures are missing: %s", exc)

    def describe(self) -> list[Any]:
        return []  # registering it must not query Redis or the database


def _redis_figures() -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    nodes = _infos()
    used = GaugeMetricFamily(
        "cachestrat_redis_used_memory_bytes",
        "Memory Redis uses (INFO used_memory).",
        labels=["node"],
    )
    limit = GaugeMetricFamily(
        "cachestrat_redis_maxmemory_bytes",
        "The maxmemory of each Redis server (0: no limit).",
        labels=["node"],
    )
    for node, info in nodes.items():
        used.add_metric([node], int(info.get("used_memory", 0)))
        limit.add_metric([node], int(info.get("maxmemory", 0)))
    yield used
    yield limit


@fail_open
def _infos() -> dict[str, dict[str, Any]]:
    """INFO memory of each primary, by ``host:port``."""
    return {_node(client): client.info("memory") for client in topology().primaries()}


def _node(client: Any) -> str:
    """``host:port`` of a server, ``unix:<path>`` of one on a Unix socket; a Sentinel
    primary by its service name, since the sentinels may move it."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if "host" not in kwargs and getattr(pool, "service_name", None):
        return f"sentinel:{pool.service_name}"
    if "host" not in kwargs and kwargs.get("path"):
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"


def _write_behind() -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    families = {
        "pending": GaugeMetricFamily(
            "cachestrat_write_behind_pending",
            "(Row, counter) pairs with increments waiting in Redis for a flush.",
            labels=["model"],
        ),
        "in_flight": GaugeMetricFamily(
            "cachestrat_write_behind_in_flight",
            "(Row, counter) pairs of batches claimed by a flush and not yet acknowledged.",
            labels=["model"],
        ),
        "oldest_claim_s": GaugeMetricFamily(
            "cachestrat_write_behind_batch_age_seconds",
            "Age of the oldest batch claimed and not yet acknowledged (0: none).",
            labels=["model"],
        ),
    }
    for figures in write_behind():
        for name, family in families.items():
            family.add_metric([figures.label], float(getattr(figures, name) or 0))
    yield from families.values()


def _dead_letters() -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily(
        "cachestrat_dead_letters",
        "Write-behind increments kept as dead letters, in the database now.",
        labels=["model"],
    )
    counted = DeadLetter.objects.values_list("model").annotate(n=Count("pk")).order_by()
    for label, count in counted:
        family.add_metric([label], count)
    yield family
