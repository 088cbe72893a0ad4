"""Prometheus metrics: each process's statistics copied into prometheus-client, off the hit path.

The hit path only increments ``ModelStats`` attributes (``stats.py``), as it does without
metrics. :func:`sync` adds what they gained since its last run to prometheus-client
counters, labelled by model; it runs on the statistics thread every
``stats.PUBLISH_EVERY`` seconds and before every scrape of the process that answers it.
Counters kept by prometheus-client itself work in its multi-process mode (gunicorn with
``PROMETHEUS_MULTIPROC_DIR``), where a custom collector would only show the one worker
that answers the scrape. The figures Redis and the database hold for every process are
read once per scrape instead (``metrics_shared.py``). See ``docs/operations.md``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

from . import stats
from .breaker import breaker

if TYPE_CHECKING:
    from collections.abc import Iterable

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric

__all__ = ["COUNTED", "breakers", "install", "is_installed", "sync", "uninstall"]

#: ``ModelStats`` counter -> (metric name, help), each labelled ``model``. prometheus-client
#: adds ``_total`` to the name.
COUNTED: dict[str, tuple[str, str]] = {
    "hits": ("cachestrat_hits", "Rows read from Redis."),
    "misses": ("cachestrat_misses", "Rows not found usable in Redis (each one is filled)."),
    "fills": ("cachestrat_fills", "Rows (or absences) stored in Redis by a leased fill."),
    "lease_waits": ("cachestrat_lease_waits", "Rounds spent waiting for another reader's fill."),
    "rejected_fills": (
        "cachestrat_rejected_fills",
        "Fills dropped because an invalidation removed their lease first.",
    ),
    "db_fallbacks": (
        "cachestrat_db_fallbacks",
        "Missed rows read from the database without filling (lease wait over, no fill).",
    ),
    "early_refreshes": ("cachestrat_early_refreshes", "Rows refreshed before expiry (XFetch)."),
    "invalidations": ("cachestrat_invalidations", "Rows (or flushes) invalidated, at commit."),
    "flushes": ("cachestrat_flushes", "Namespace flushes (Model.cached.flush()), at commit."),
    "batches": ("cachestrat_write_behind_batches", "Write-behind batches applied."),
    "flushed": (
        "cachestrat_write_behind_flushed",
        "Write-behind increments applied to the database (the sum of |delta|).",
    ),
    "dead_letters": (
        "cachestrat_write_behind_dead_letters",
        "Write-behind increments kept as dead letters by the flushes of this process.",
    ),
}
#: Upper bounds of the latency buckets, in seconds: 25 microseconds to 1 second.
BUCKETS = (25e-6, 50e-6, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class _Metrics:
    """The prometheus-client objects, made once per process in the default registry."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.counters: dict[str, Counter] = {
            name: Counter(metric, text, ["model"]) for name, (metric, text) in COUNTED.items()
        }
        self.redis_errors = Counter("cachestrat_redis_errors", "Redis calls that failed.")
        self.breaker_trips = Counter(
            "cachestrat_breaker_trips", "Times the circuit breaker opened."
        )
        self.breaker_open: Gauge = Gauge(
            "cachestrat_breaker_open",
            "1 while the circuit breaker skips Redis (the highest of all processes).",
            ["node"],
            multiprocess_mode="livemax",
        )
        times = {
            "hit": "Time of an all-hit read per row (sampled: see docs/operations.md).",
            "fill": "Database read time per row of a fill (sampled: see docs/operations.md).",
            "miss": "Time from a miss to its row, per row (sampled: see docs/operations.md).",
        }
        self.times: dict[str, Histogram] = {
            kind: Histogram(f"cachestrat_{kind}_seconds", text, ["model"], buckets=BUCKETS)
            for kind, text in times.items()
        }


class _SyncFirst:
    """Registered before the metrics, so a scrape of the default registry syncs first."""

    def collect(self) -> Iterable[Metric]:
        sync()
        return []

    def describe(self) -> Iterable[Metric]:
        return []


_lock = threading.Lock()
_metrics: _Metrics | None = None
_exported: dict[tuple[str, str], int] = {}  # (label, counter) -> value already added
_installed: list[Any] = []


def _get() -> _Metrics:
    global _metrics
    if _metrics is None:
        from prometheus_client import REGISTRY

        from .metrics_shared import SharedCollector

        REGISTRY.register(_SyncFirst())
        _metrics = _Metrics()
        REGISTRY.register(SharedCollector())
    return _metrics


def install() -> None:
    """Export the statistics (``CACHESTRAT["METRICS"]``; ``hooks.install()`` calls it)."""
    if _installed:
        return
    _get()
    stats.on_tick.append(sync)
    stats.on_samples.append(_observe)
    _installed.append(True)
    stats.ensure_publisher()


def uninstall() -> None:
    """Stop syncing (the metrics already made stay in the registry, as they were)."""
    if not _installed:
        return
    stats.on_tick.remove(sync)
    stats.on_samples.remove(_observe)
    _installed.clear()


def is_installed() -> bool:
    return bool(_installed)


def breakers() -> dict[str, Any]:
    """The circuit breakers by Redis node: the one place that knows how many there are
    (today one per process, named ``all``)."""
    return {"all": breaker}


def sync() -> None:
    """Add what each counter gained since the last sync to its Prometheus counter."""
    if not _installed:
        return
    metrics = _get()
    with _lock:
        for label, counts in stats.labels():
            if label == stats.REDIS_LABEL:  # counted by the breakers, below
                continue
            for name, counter in metrics.counters.items():
                _add(counter.labels(label), (label, name), getattr(counts, name))
        by_node = breakers()
        errors = sum(b.errors for b in by_node.values())
        trips = sum(b.trips for b in by_node.values())
        _add(metrics.redis_errors, ("", "redis_errors"), errors)
        _add(metrics.breaker_trips, ("", "breaker_trips"), trips)
        for node, one in by_node.items():
            metrics.breaker_open.labels(node).set(1 if one.is_open else 0)


def _add(counter: Any, key: tuple[str, str], value: int) -> None:
    before = _exported.get(key, 0)
    # A counter that went down was reset (stats.reset(), breaker.reset()): all it holds
    # was counted since, and a Prometheus counter only goes up.
    delta = value - before if value >= before else value
    if delta > 0:
        counter.inc(delta)
    _exported[key] = value


def _observe(label: str, kind: str, times: list[float]) -> None:
    histogram = _get().times[kind].labels(label)
    for microseconds in times:
        histogram.observe(microseconds / 1e6)


def _after_fork_in_child() -> None:
    global _lock
    # Another thread of the parent (its statistics thread) may have held the lock at the
    # fork, and that thread does not exist here to release it.
    _lock = threading.Lock()
    # In multi-process mode a child's counters start from zero (its own files), while
    # its ModelStats start from the parent's totals: count only the child's own from here.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        for label, counts in stats.labels():
            for name in COUNTED:
                _exported[(label, name)] = getattr(counts, name)
        _exported[("", "redis_errors")] = sum(b.errors for b in breakers().values())
        _exported[("", "breaker_trips")] = sum(b.trips for b in breakers().values())


os.register_at_fork(after_in_child=_after_fork_in_child)


def registry() -> CollectorRegistry:
    """What a scrape shows: the default registry, or in multi-process mode every
    process's files and the shared figures."""
    from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

    from .metrics_shared import SharedCollector

    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        _get()  # registers _SyncFirst, which syncs as the scrape collects
        return REGISTRY
    sync()
    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
    combined.register(SharedCollector())
    return combined
