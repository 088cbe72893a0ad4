"""Multi-key and per-server Redis operations, for one server or a Redis Cluster.

The topology is chosen once per connection (not per call): on one server (or a Sentinel
primary) the hit path is the client's own ``MGET``; on a Redis Cluster multi-key commands
are split by hash slot and sent through one cluster pipeline, which writes to every node
before it reads any reply, so a call costs about one round trip to the slowest node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.cluster import RedisCluster
from redis.exceptions import RedisError

__all__ = ["Cluster", "ReplicaLag", "Single", "Topology", "topology_for"]

#: How long an invalidation waits for a replica of each primary it wrote to (``WAIT``).
REPLICA_WAIT_MS = 100
#: How often a process whose sentinels knew no live replica asks them again.
SENTINEL_RECHECK_S = 10.0


class ReplicaLag(RedisError):
    """An invalidation reached a primary, but no replica of it acknowledged it in time: a
    failover now could promote a replica without the deletes, so it is kept and sent
    again (``keys`` and ``sets``: what was sent)."""

    def __init__(self, keys: Iterable[str] = (), sets: Mapping[str, str] | None = None) -> None:
        super().__init__("no replica acknowledged the invalidation in time")
        self.keys = list(keys)
        self.sets = dict(sets or {})


class Single:
    """Every key on one connection."""

    is_cluster = False

    def __init__(self, client: Any) -> None:
        self.client = client
        # The hit path calls the client's bound MGET: nothing runs in between.
        self.mget: Callable[[list[str]], list[Any]] = client.mget
        self.replicated = _has_sentinel_replicas(client)
        self._asked = time.monotonic()

    def pipeline(self) -> Any:
        return self.client.pipeline(transaction=False)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.client.delete(*keys)

    def invalidate(
        self,
        keys: Iterable[str],
        sets: Mapping[str, str],
        marks: Iterable[str] = (),
        lag_ms: int = 0,
        wait: bool = True,
    ) -> None:
        """Set ``marks`` for ``lag_ms`` (replicas.py), delete ``keys`` and SET each of
        ``sets``, in one pipelined round trip (``wait``: then ``WAIT`` for a replica)."""
        pipe = self.pipeline()
        for mark in marks:
            pipe.set(mark, b"1", px=lag_ms)
        keys = list(keys)
        if keys:
            pipe.delete(*keys)
        for key, value in sets.items():
            pipe.set(key, value)
        replicated = wait and self._has_replicas()
        if replicated:  # a Sentinel primary: see Cluster.invalidate
            pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS)
        out = pipe.execute()
        if replicated and int(out[-1]) < 1:
            self._asked = 0.0  # after a failover the new primary may have no replica
            raise ReplicaLag(keys, sets)

    def _has_replicas(self) -> bool:
        """Whether the sentinels know a live replica: asked again after a WAIT that no
        replica answered, and every ``SENTINEL_RECHECK_S`` while they knew none."""
        if self.replicated and self._asked:
            return True
        if time.monotonic() - self._asked >= SENTINEL_RECHECK_S or not self._asked:
            self.replicated = _has_sentinel_replicas(self.client)
            self._asked = time.monotonic()
        return self.replicated

    def primaries(self) -> list[Any]:
        """One client per primary, for per-server commands (SCAN, INFO, DBSIZE)."""
        return [self.client]


class Cluster(Single):
    """A Redis Cluster through redis-py's ``RedisCluster`` (its slot table and redirects)."""

    is_cluster = True

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        # NOTE: the generation key and the rows it guards live in different slots, so the
        # hit path's MGET is split by slot: one MGET per slot, every node in one pipeline.
        self.mget = client.mget_nonatomic

    def pipeline(self) -> Any:
        return self.client.pipeline()

    def _by_slot(self, keys: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(self.client.keyslot(key), []).append(key)
        return groups

    def delete(self, keys: Iterable[str]) -> None:
        groups = self._by_slot(keys)
        if groups:
            pipe = self.pipeline()
            for group in groups.values():
                pipe.execute_command("DEL", *group)
            pipe.execute()

    def invalidate(
        self,
        keys: Iterable[str],
        sets: Mapping[str, str],
        marks: Iterable[str] = (),
        lag_ms: int = 0,
        wait: bool = True,
    ) -> None:
        """Lag markers, deletes and new generations, then ``WAIT 1`` on each primary written to that
        has a replica, all in one cluster pipeline (so each WAIT follows the writes on
        the same connection). Invariant 9: an invalidation counts as sent only once a
        replica holds it, so a failover cannot promote a replica that lacks it."""
        pipe = self.pipeline()
        primaries: dict[str, Any] = {}
        keys = list(keys)
        for mark in marks:
            pipe.set(mark, b"1", px=lag_ms)
        for slot, group in self._by_slot(keys).items():
            pipe.execute_command("DEL", *group)
            self._replicated(slot, primaries)
        for key, value in sets.items():
            pipe.set(key, value)
            self._replicated(self.client.keyslot(key), primaries)
        if not wait:
            primaries.clear()
        for node in primaries.values():
            pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS, target_nodes=node)
        out = pipe.execute()
        acknowledged = out[len(out) - len(primaries) :]
        if any(int(count) < 1 for count in acknowledged):
            raise ReplicaLag(keys, sets)

    def _replicated(self, slot: int, primaries: dict[str, Any]) -> None:
        nodes = self.client.nodes_manager.slots_cache.get(slot) or []
        if len(nodes) > 1:  # the primary and its replicas, as the slot table lists them
            primaries.setdefault(nodes[0].name, nodes[0])

    def primaries(self) -> list[Any]:
        return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]


Topology = Single | Cluster


def _has_sentinel_replicas(client: Any) -> bool:
    """Whether this is a Sentinel primary with replicas (asked of the sentinels once per
    connection): only then can a failover promote a replica that missed a delete."""
    pool: Any = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is None or not getattr(pool, "is_master", False):
        return False
    return bool(manager.discover_slaves(pool.service_name))


def topology_for(client: Any) -> Topology:
    """The operations for this client, dispatched once on its type."""
    return Cluster(client) if isinstance(client, RedisCluster) else Single(client)
