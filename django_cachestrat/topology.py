"""Multi-key and per-server Redis operations on one server (or a Sentinel primary), and the
errors every topology raises; ``cluster.py`` holds the Redis Cluster's.

The topology is chosen once per connection (not per call, ``client.topology_for``): on one
server the hit path is the client's own ``MGET``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from redis.exceptions import ConnectionError, RedisError, TimeoutError

from .breaker import CircuitBreaker, node_name
from .conf import conf

__all__ = ["NodeDown", "ReplicaLag", "Single", "failed_node", "replica_wait_ms"]

logger = logging.getLogger("django_cachestrat")

#: How often a process whose sentinels knew no live replica asks them again.
SENTINEL_RECHECK_S = 10.0


#: The share of the client's socket timeout a ``WAIT`` may take at most.
WAIT_SHARE_OF_TIMEOUT = 0.8


def replica_wait_ms(options: Mapping[str, Any]) -> int:
    """How long a write waits for a replica of each primary it wrote to (``WAIT 1 <ms>``):
    ``REDIS_REPLICA_WAIT`` in whole milliseconds, at least 1, since ``WAIT`` with 0 would
    wait for ever. A wait the client's ``socket_timeout`` (in ``options``, its connection
    keyword arguments) would cut short is lowered below it, with a warning: a timed-out
    ``WAIT`` would count the node as failed, where an unanswered one only keeps the write."""
    wait = conf.REDIS_REPLICA_WAIT
    timeout = options.get("socket_timeout")
    if timeout and wait >= timeout:
        lowered = timeout * WAIT_SHARE_OF_TIMEOUT
        logger.warning(
            "CACHESTRAT['REDIS_REPLICA_WAIT'] (%g s) is not below the Redis client's "
            "socket timeout (%g s): writes wait %g s for a replica instead. Raise the "
            "socket timeout to wait longer.",
            wait,
            timeout,
            lowered,
        )
        wait = lowered
    return max(1, round(wait * 1000))


class ReplicaLag(RedisError):
    """An invalidation reached a primary, but no replica of it acknowledged it in time: a
    failover now could promote a replica without the deletes, so it is kept and sent
    again (``keys`` and ``sets``: what was sent)."""

    def __init__(self, keys: Iterable[str] = (), sets: Mapping[str, str] | None = None) -> None:
        super().__init__("no replica acknowledged the invalidation in time")
        self.keys = list(keys)
        self.sets = dict(sets or {})


class NodeDown(RedisError):
    """A Redis Cluster node failed this call (``failed``), or its breaker is open and the
    call did not try it."""

    def __init__(self, node: str, failed: bool) -> None:
        super().__init__(f"node {node} {'failed' if failed else 'is known down'}")
        self.node = node
        self.failed = failed


def failed_node(exc: BaseException) -> str | None:
    """The "host:port" of the node a connection error or timeout came from: redis-py
    attaches the connection (or the cluster node) to the errors it raises."""
    if not isinstance(exc, ConnectionError | TimeoutError):
        return None
    where = getattr(exc, "connection", None)
    host, port = getattr(where, "host", None), getattr(where, "port", None)
    return node_name(host, port) if host and port else None


class Single:
    """Every key on one connection."""

    is_cluster = False

    def __init__(self, client: Any) -> None:
        self.client = client
        # The hit path calls the client's bound MGET: nothing runs in between.
        self.mget: Callable[[list[str]], list[Any]] = client.mget
        self.replicated = _has_sentinel_replicas(client)
        self._asked = time.monotonic()
        # Whether a failover can promote a replica: only then do writes wait for one.
        pool: Any = getattr(client, "connection_pool", None)
        self.may_lag = getattr(pool, "sentinel_manager", None) is not None
        # Read once (a settings change builds a new topology); checked against the socket
        # timeout only where writes wait.
        options = getattr(pool, "connection_kwargs", {}) if self.may_lag else {}
        self.wait_ms = replica_wait_ms(options)

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
            pipe.execute_command("WAIT", 1, self.wait_ms)
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

    def home(self, generation: str, key: str) -> str:
        """The key to read ``generation`` from together with ``key``: on one server, the
        generation key itself."""
        return generation

    def guard(self, keys: Iterable[str]) -> list[CircuitBreaker]:
        """On a cluster: raise :class:`NodeDown` if a node these keys live on is known down,
        else the breakers of the nodes this call probes (for ``breaker.recovered`` once they
        answered). One server has the connection's breaker only, checked by ``fail_open``."""
        return []

    def wait_targets(self, keys: Iterable[str]) -> list[Any]:
        """Where a write of ``keys`` must ``WAIT`` for a replica: the primary, if the
        sentinels know a live replica of it."""
        return [None] if self._has_replicas() else []

    def add_waits(self, pipe: Any, targets: list[Any]) -> None:
        """``WAIT 1`` after the writes queued in ``pipe``, once per target."""
        for _ in targets:
            pipe.execute_command("WAIT", 1, self.wait_ms)

    def primaries(self) -> list[Any]:
        """One client per primary, for per-server commands (SCAN, INFO, DBSIZE)."""
        return [self.client]

    def names(self) -> list[str]:
        """The server as breaker states name it: "host:port", a socket path, or a
        Sentinel service's name."""
        pool: Any = getattr(self.client, "connection_pool", None)
        if getattr(pool, "service_name", None):
            return [f"sentinel:{pool.service_name}"]
        options = getattr(pool, "connection_kwargs", {})
        if options.get("path"):
            return [str(options["path"])]
        return [node_name(options.get("host", "localhost"), options.get("port", 6379))]


def _has_sentinel_replicas(client: Any) -> bool:
    """Whether this is a Sentinel primary with replicas (asked of the sentinels once per
    connection): only then can a failover promote a replica that missed a delete."""
    pool: Any = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    if manager is None or not getattr(pool, "is_master", False):
        return False
    return bool(manager.discover_slaves(pool.service_name))
