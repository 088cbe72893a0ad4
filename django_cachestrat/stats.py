"""Statistics: per-model counters in process, published to Redis per minute for 24 hours.

The hit path pays a few attribute increments and two clock reads. A daemon thread in
each process publishes the deltas every ``PUBLISH_EVERY`` seconds into one Redis hash
per minute, so every process's figures add up in one view (admin, ``cachestrat_stats``).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["ModelStats", "Summary", "publish", "read", "stats_for"]

logger = logging.getLogger("django_cachestrat")

PUBLISH_EVERY = 10.0  # seconds
KEEP_SECONDS = 25 * 3600  # a little over the 24 hours shown
SAMPLES = 512  # recent hit and fill times kept per model, across processes
#: The label under which Redis-wide figures (errors, breaker trips) are counted.
REDIS_LABEL = "_redis"

COUNTERS = (
    "hits",
    "misses",
    "queries_saved",
    "fills",
    "fill_time_us",
    "rejected_fills",
    "lease_waits",
    "db_fallbacks",
    "early_refreshes",
    "invalidations",
    "redis_errors",
    "breaker_trips",
    "flushes",
    "batches",
    "flushed",
    "dead_letters",
)


@dataclasses.dataclass(slots=True)
class ModelStats:
    """Counts since the process started; a race may lose an increment now and then, which
    is fine for statistics and keeps the hit path free of locks."""

    hits: int = 0
    misses: int = 0
    queries_saved: int = 0
    fills: int = 0
    fill_time_us: int = 0
    rejected_fills: int = 0  # a fill whose lease an invalidation had removed
    lease_waits: int = 0  # rounds spent waiting for another reader's fill
    db_fallbacks: int = 0  # reads served from the database without filling
    early_refreshes: int = 0
    invalidations: int = 0
    redis_errors: int = 0
    breaker_trips: int = 0
    flushes: int = 0  # namespace flushes (Model.cached.flush()), at commit
    batches: int = 0  # write-behind batches this process applied
    flushed: int = 0  # ...the increments in them (the sum of |delta|)
    dead_letters: int = 0  # ...the increments of them kept as dead letters
    hit_times: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
    fill_times: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=64)
    )
    miss_times: collections.deque[float] = dataclasses.field(  # lease to row, per row
        default_factory=lambda: collections.deque(maxlen=64)
    )
    published: dict[str, int] = dataclasses.field(default_factory=dict)


_stats: dict[str, ModelStats] = {}
_lock = threading.Lock()
_publisher_pid = 0
#: Called by the publisher thread every ``PUBLISH_EVERY`` seconds, before it publishes,
#: whether or not Redis answers (metrics.py syncs its exported figures there).
on_tick: list[Callable[[], None]] = []
#: Called with (label, "hit" or "fill", times in microseconds) for each batch of time
#: samples the publisher takes, before it sends them.
on_samples: list[Callable[[str, str, list[float]], None]] = []


def labels() -> list[tuple[str, ModelStats]]:
    """Every label counted in this process, with its counters."""
    return list(_stats.items())


def stats_for(label: str) -> ModelStats:
    try:
        return _stats[label]
    except KeyError:
        with _lock:
            stats = _stats.setdefault(label, ModelStats())
        ensure_publisher()
        return stats


def reset() -> None:
    for stats in list(_stats.values()):
        for name in COUNTERS:
            setattr(stats, name, 0)
        stats.hit_times.clear()
        stats.fill_times.clear()
        stats.miss_times.clear()
        stats.published.clear()


def _after_fork_in_child() -> None:
    global _lock
    # Another thread of the parent may have held the lock at the fork; it does not exist
    # here to release it, and ensure_publisher() below takes it.
    _lock = threading.Lock()
    # The parent publishes what it counted before the fork; the child only its own, from
    # a publisher thread of its own (threads do not survive a fork).
    for stats in _stats.values():
        stats.published = {name: getattr(stats, name) for name in COUNTERS}
        stats.hit_times.clear()
        stats.fill_times.clear()
        stats.miss_times.clear()
    if _stats:
        ensure_publisher()


os.register_at_fork(after_in_child=_after_fork_in_child)


def ensure_publisher() -> None:
    """Start this process's publisher thread (again after a fork)."""
    global _publisher_pid
    if _publisher_pid == os.getpid():
        return
    with _lock:
        if _publisher_pid == os.getpid():
            return
        _publisher_pid = os.getpid()
        threading.Thread(target=_publish_forever, name="cachestrat-stats", daemon=True).start()


def _publish_forever() -> None:
    while True:
        time.sleep(PUBLISH_EVERY)
        for hook in list(on_tick):
            try:
                hook()
            except Exception as exc:  # statistics never break anything
                logger.debug("A statistics hook failed: %s", exc)
        try:
            publish()
        except Exception as exc:  # statistics never break anything
            logger.debug("Could not publish cache statistics: %s", exc)


def _minute_key(prefix: str, when: float) -> str:
    return f"{prefix}:stats:{time.strftime('%Y%m%d%H%M', time.gmtime(when))}"


def publish() -> None:
    """Send this process's counter deltas and recent timings to Redis."""
    from .breaker import breaker
    from .client import connection
    from .conf import conf

    # Redis's own health is counted by the breaker (the Redis layer imports nothing above).
    redis = stats_for(REDIS_LABEL)
    redis.redis_errors, redis.breaker_trips = breaker.errors, breaker.trips
    prefix = conf.KEY_PREFIX
    minute = _minute_key(prefix, time.time())
    pipe = connection().pipeline(transaction=False)
    for label, stats in list(_stats.items()):
        for name in COUNTERS:
            value = getattr(stats, name)
            delta = value - stats.published.get(name, 0)
            if delta:
                pipe.hincrby(minute, f"{label}|{name}", delta)
                stats.published[name] = value
        kinds = ("hit", stats.hit_times), ("fill", stats.fill_times), ("miss", stats.miss_times)
        for kind, times in kinds:
            if times and on_samples:
                _hand_over(label, kind, list(times))
            if times:
                key = f"{prefix}:stats:samples:{label}:{kind}"
                pipe.rpush(key, *[round(t, 1) for t in times])
                pipe.ltrim(key, -SAMPLES, -1)
                pipe.expire(key, KEEP_SECONDS)
                times.clear()
    pipe.expire(minute, KEEP_SECONDS)
    pipe.execute()


def _hand_over(label: str, kind: str, times: list[float]) -> None:
    for sink in list(on_samples):
        try:
            sink(label, kind, times)
        except Exception as exc:  # statistics never break anything
            logger.debug("A statistics sink failed: %s", exc)


@dataclasses.dataclass
class Summary:
    """One model's figures over a window, every process added up."""

    label: str
    counts: dict[str, int]
    median_hit_us: float | None
    median_fill_us: float | None

    @property
    def hit_ratio(self) -> float | None:
        reads = self.counts.get("hits", 0) + self.counts.get("misses", 0)
        return self.counts.get("hits", 0) / reads if reads else None


def read(minutes: int = 60) -> dict[str, Summary]:
    """Figures of the last ``minutes`` (at most 24 hours) for every label seen."""
    from .client import connection
    from .conf import conf

    publish()  # this process's latest figures first
    prefix = conf.KEY_PREFIX
    now = time.time()
    client = connection()
    pipe = client.pipeline(transaction=False)
    for i in range(min(max(minutes, 1), 24 * 60)):
        pipe.hgetall(_minute_key(prefix, now - 60 * i))
    counts: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for minute in pipe.execute():
        for field, value in minute.items():
            label, _, name = field.decode().partition("|")
            counts[label][name] = counts[label].get(name, 0) + int(value)
    return {label: _summary(client, prefix, label, c) for label, c in counts.items()}


def _summary(client: Any, prefix: str, label: str, counts: dict[str, int]) -> Summary:
    medians = []
    for kind in ("hit", "fill"):
        samples = client.lrange(f"{prefix}:stats:samples:{label}:{kind}", 0, -1)
        medians.append(statistics.median(float(s) for s in samples) if samples else None)
    return Summary(label, counts, medians[0], medians[1])
