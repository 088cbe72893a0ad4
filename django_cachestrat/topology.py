"""Multi-key and per-server Redis operations, for one server or a Redis Cluster.

The topology is chosen once per connection (not per call): on one server (or a Sentinel
primary) the hit path is the client's own ``MGET``; on a Redis Cluster multi-key commands
are split by hash slot and sent through one cluster pipeline, which writes to every node
before it reads any reply, so a call costs about one round trip to the slowest node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.cluster import RedisCluster

__all__ = ["Cluster", "Single", "Topology", "topology_for"]


class Single:
    """Every key on one connection."""

    is_cluster = False

    def __init__(self, client: Any) -> None:
        self.client = client
        # The hit path calls the client's bound MGET: nothing runs in between.
        self.mget: Callable[[list[str]], list[Any]] = client.mget

    def pipeline(self) -> Any:
        return self.client.pipeline(transaction=False)

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        if keys:
            self.client.delete(*keys)

    def invalidate(self, keys: Iterable[str], sets: Mapping[str, str]) -> None:
        """Delete ``keys`` and SET each of ``sets`` in one pipelined round trip."""
        pipe = self.pipeline()
        keys = list(keys)
        if keys:
            pipe.delete(*keys)
        for key, value in sets.items():
            pipe.set(key, value)
        pipe.execute()

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

    def invalidate(self, keys: Iterable[str], sets: Mapping[str, str]) -> None:
        pipe = self.pipeline()
        for group in self._by_slot(keys).values():
            pipe.execute_command("DEL", *group)
        for key, value in sets.items():
            pipe.set(key, value)
        pipe.execute()

    def primaries(self) -> list[Any]:
        return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]


Topology = Single | Cluster


def topology_for(client: Any) -> Topology:
    """The operations for this client, dispatched once on its type."""
    return Cluster(client) if isinstance(client, RedisCluster) else Single(client)
