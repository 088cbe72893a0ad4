"""Whether Redis may evict pending write-behind increments, read from ``INFO memory``.

Cached rows, leases and generation keys may be evicted under any policy: that only causes
misses (a missing generation matches no payload). Pending increments of write-behind
counters have no TTL and exist nowhere else: an ``allkeys-*`` policy with ``maxmemory`` set
may evict them, and they are lost. The policy is read from ``INFO`` (managed services often
disable ``CONFIG``), on every primary of a cluster.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

__all__ = ["MESSAGE", "evicting_policies", "warn_at_startup"]

logger = logging.getLogger("django_cachestrat")

MESSAGE = (
    "Redis may evict keys without a TTL (maxmemory-policy {policies} with maxmemory set), "
    "and the pending increments of the write-behind counters of {models} are such keys: "
    "increments not yet flushed would be lost. Use a volatile-* policy (volatile-lru or "
    "volatile-lfu), or noeviction."
)


def evicting_policies(infos: Iterable[dict[str, Any]]) -> list[str]:
    """The ``allkeys-*`` policies, among servers with ``maxmemory`` set."""
    found = set()
    for info in infos:
        policy = str(info.get("maxmemory_policy", ""))
        if policy.startswith("allkeys-") and int(info.get("maxmemory", 0)):
            found.add(policy)
    return sorted(found)


def counter_labels() -> list[str]:
    from .drain import counter_models

    try:
        return sorted(m._meta.label_lower for m in counter_models())
    except Exception:  # invalid settings: the system checks report them
        return []


def risk(primaries: Iterable[Any]) -> str | None:
    """The warning for these servers, or None; Redis errors rise."""
    labels = counter_labels()
    if not labels:
        return None
    policies = evicting_policies(client.info("memory") for client in primaries)
    if not policies:
        return None
    return MESSAGE.format(policies=", ".join(policies), models=", ".join(labels))


def warn_at_startup(primaries: Iterable[Any]) -> None:
    """Log the warning once per connection (the first Redis call of a process)."""
    from .client import REDIS_ERRORS

    try:
        message = risk(primaries)
    except REDIS_ERRORS:
        return  # Redis is not reachable now: the call itself fails open
    if message:
        logger.warning(message)
