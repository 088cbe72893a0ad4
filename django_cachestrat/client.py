"""The Redis connection (django-redis's or ``CONNECTION``'s), its topology and breakers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core.cache import InvalidCacheBackendError, caches
from django.utils.module_loading import import_string
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException, RedisError

from .breaker import State, breaker
from .cluster import Cluster
from .conf import conf
from .topology import Single

__all__ = [
    "REDIS_ERRORS",
    "Topology",
    "breaker_states",
    "built",
    "connection",
    "reset",
    "topology",
    "topology_for",
]

#: Errors that mean "Redis cannot serve this call": down, unreachable, timed out, out of
#: memory (a ResponseError), a socket failure below redis-py, a cluster that cannot be
#: reached or has no node for a slot (RedisClusterException is no RedisError), or no such
#: cache any more (CACHES changed at run time).
REDIS_ERRORS = (RedisError, RedisClusterException, OSError, InvalidCacheBackendError)

_topology: Topology | None = None
_built_with: Any = None
#: Called with the primaries when the connection is first built (plugged in by hooks.py).
on_connect: list[Callable[[list[Any]], None]] = []


Topology = Single | Cluster


def topology_for(client: Any) -> Topology:
    """The operations for this client, dispatched once on its type."""
    return Cluster(client) if isinstance(client, RedisCluster) else Single(client)


def topology() -> Topology:
    """The connection and its multi-key operations, chosen once on the client's type."""
    global _topology, _built_with
    # Built once, for the CACHES in force: a settings change resets it, and a thread that
    # rebuilt it in the moment between our reset and Django's own (the statistics
    # publisher, say) would have kept the old cache's connection; comparing the
    # settings object Django replaces on each change closes that gap.
    if _topology is None or _built_with is not caches.settings:
        settings_now = caches.settings
        made = topology_for(_build())
        for hook in on_connect:  # eviction.warn_at_startup: one INFO, with counters only
            hook(made.primaries())
        _topology, _built_with = made, settings_now
    return _topology


def _build() -> Any:
    path = conf.CONNECTION
    if not path:
        from django_redis import get_redis_connection

        return get_redis_connection(conf.CACHE_ALIAS)
    # NOTE: a RedisCluster connects to its nodes when it is built: a cluster that cannot
    # be reached raises here, inside a fail_open call, and the next call tries again.
    return import_string(path)()


def connection() -> Any:
    """The raw redis-py client: ``CONNECTION``'s, else the django-redis cache's."""
    return topology().client


def built() -> Topology | None:
    """The topology already built, or None: never connects."""
    return _topology


def reset() -> None:
    """Forget the connection (settings changed)."""
    global _topology
    _topology = None


def breaker_states() -> dict[str, State]:
    """Every server's breaker: ``{"host:port": "closed" | "open" | "half-open"}``.

    One entry for one server (or a Sentinel primary), one per primary on a Redis Cluster
    (and per node that failed since). The connection's own breaker, open when Redis could
    not be reached at all, shows on every entry."""
    shape = _topology
    whole = breaker.state
    names = shape.names() if shape is not None else []
    if shape is None or not shape.is_cluster:
        return dict.fromkeys(names or ["redis"], whole)
    states = {name: "closed" for name in names}
    states.update({name: node.state for name, node in list(breaker.nodes.items())})
    if whole != "closed":
        states = dict.fromkeys(states, whole)
    return states
