"""Per-process, per-model counters: cheap attribute increments on the paths they count."""

from __future__ import annotations

import dataclasses
import threading

__all__ = ["ModelStats", "all_stats", "stats_for"]


@dataclasses.dataclass(slots=True)
class ModelStats:
    """Counts since the process started (or since :func:`reset`); races may lose an
    increment now and then, which is fine for statistics and keeps the hit path lock-free."""

    hits: int = 0
    misses: int = 0
    fills: int = 0
    rejected_fills: int = 0  # a fill whose lease an invalidation had removed
    lease_waits: int = 0  # rounds spent waiting for another reader's fill
    db_fallbacks: int = 0  # reads served from the database without filling
    early_refreshes: int = 0
    fill_time_us: int = 0


_stats: dict[str, ModelStats] = {}
_lock = threading.Lock()


def stats_for(label: str) -> ModelStats:
    try:
        return _stats[label]
    except KeyError:
        with _lock:
            return _stats.setdefault(label, ModelStats())


def all_stats() -> dict[str, ModelStats]:
    return dict(_stats)


def reset() -> None:
    for stats in list(_stats.values()):
        for field in dataclasses.fields(stats):
            setattr(stats, field.name, 0)
