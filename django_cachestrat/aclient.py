"""The ``redis.asyncio`` connection of async reads: one client per event loop, and fail-open.

The async client is derived from the sync one (django-redis's or ``CONNECTION``'s), so
both speak to the same servers with the same options: one server, a Redis Cluster, or a
Sentinel primary. A client that cannot be derived (a custom connection class, a Sentinel
replica) leaves async reads on the sync path.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.connection as aconnection
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.cluster import RedisCluster
from redis.sentinel import SentinelConnectionPool

from . import client
from .breaker import Unavailable, breaker
from .client import REDIS_ERRORS, Topology
from .failopen import failed
from .pending import pending

__all__ = ["Deferred", "amget"]


class Deferred(Exception):
    """The async path cannot serve this call: the caller runs the sync path in a thread."""


#: Connection options that mean the same to redis-py's sync and async connections; the
#: others (parser classes, retry objects, handlers) are objects of the sync world.
_PLAIN = frozenset(
    {
        "host",
        "port",
        "path",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "socket_keepalive_options",
        "client_name",
        "health_check_interval",
        "protocol",
        "encoding",
        "encoding_errors",
        "decode_responses",
    }
)

_CONNECTIONS: dict[type[Any], type[Any]] = {
    redis.Connection: aconnection.Connection,
    redis.SSLConnection: aconnection.SSLConnection,
    redis.UnixDomainSocketConnection: aconnection.UnixDomainSocketConnection,
}


def _plain(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k in _PLAIN or k.startswith("ssl_")}


def derive(sync_client: Any) -> Any:
    """The ``redis.asyncio`` twin of a sync client, or None when it cannot be derived."""
    if isinstance(sync_client, RedisCluster):
        primaries = sync_client.get_nodes()  # type: ignore[no-untyped-call]
        nodes = [ClusterNode(node.host, node.port) for node in primaries]
        options = _plain(sync_client.nodes_manager.connection_kwargs)
        for name in ("host", "port", "path", "db"):
            options.pop(name, None)
        return AsyncRedisCluster(startup_nodes=nodes, **options)
    pool = getattr(sync_client, "connection_pool", None)
    if isinstance(pool, SentinelConnectionPool):
        return _sentinel_primary(pool)
    if type(pool) is not redis.ConnectionPool:
        return None
    connection_class = _CONNECTIONS.get(pool.connection_class)
    if connection_class is None:
        return None
    options = _plain(pool.connection_kwargs)
    apool = redis.asyncio.ConnectionPool(connection_class=connection_class, **options)
    return redis.asyncio.Redis.from_pool(apool)  # closing the client closes its pool


def _sentinel_primary(pool: SentinelConnectionPool) -> Any:
    """``master_for`` through the same sentinels, asked by this loop's own connections."""
    if not pool.is_master:
        return None
    manager = pool.sentinel_manager
    sentinels = [s.connection_pool.connection_kwargs for s in manager.sentinels]
    addresses = [(kwargs["host"], kwargs["port"]) for kwargs in sentinels]
    asked = _plain(sentinels[0]) if sentinels else {}
    for name in ("host", "port", "path", "db"):
        asked.pop(name, None)
    options = _plain(pool.connection_kwargs)
    for name in ("host", "port", "path"):
        options.pop(name, None)
    async_manager = AsyncSentinel(
        addresses, min_other_sentinels=manager.min_other_sentinels, sentinel_kwargs=asked
    )
    return async_manager.master_for(pool.service_name, **options)


async def _close(client: Any) -> None:
    await client.aclose()
    pool = getattr(client, "connection_pool", None)  # a RedisCluster has a pool per node
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):  # a Sentinel primary's sentinels
        await sentinel.aclose()


class _Link:
    """One event loop's async client, and the sync topology it was derived from."""

    __slots__ = ("client", "closer", "mget", "source")

    def __init__(self, source: Topology) -> None:
        self.source = source
        self.client = derive(source.client)
        self.closer: AsyncIterator[None] | None = None
        self.mget: Callable[..., Awaitable[list[Any]]] | None = None
        if isinstance(self.client, AsyncRedisCluster):
            self.mget = self.client.mget_nonatomic  # split by slot, as topology.Cluster
        elif self.client is not None:
            self.mget = self.client.mget


# NOTE: a redis.asyncio client belongs to the loop its connections were opened on, so each
# running loop has its own; links of loops that have closed are forgotten.
_links: dict[asyncio.AbstractEventLoop, _Link] = {}


def _link() -> _Link:
    loop = asyncio.get_running_loop()
    source = client.topology()  # rebuilt when settings change: then so is the link
    link = _links.get(loop)
    if link is None or link.source is not source:
        for other in list(_links):  # a snapshot: loops of other threads may come and go
            if other.is_closed():
                _links.pop(other, None)
        link = _links[loop] = _Link(source)
    return link


def _gate() -> None:
    """Before an async Redis call: :class:`Deferred` while invalidations are pending (the
    sync path replays them first), :class:`Unavailable` while the breaker is open."""
    if pending.waiting or pending.unconfirmed_keys or pending.unconfirmed_generations:
        raise Deferred("invalidations are pending")
    if not breaker.allow():
        raise Unavailable("circuit breaker open")


async def _closing(client: Any) -> AsyncIterator[None]:
    # NOTE: an async generator the loop has seen is finalised by the loop's own shutdown
    # (``shutdown_asyncgens``: asyncio.run, asgiref, uvicorn), so the client's connections
    # are closed on their loop, before it closes, with no call from the application.
    try:
        yield
    finally:
        await _close(client)


async def amget(keys: list[str]) -> list[bytes | None]:
    """MGET through this loop's async client (split by slot on a Redis Cluster), under
    the sync path's fail-open policy (``failopen.fail_open``).

    NOTE: the hit path's one Redis call, so the policy is inlined rather than a wrapper:
    one coroutine less on every hit, the same gate and the same error handling. The client
    is looked up before the gate, so that a call the sync path serves never takes the one
    probe the breaker lets through after a cool-down: the sync path must have it, or the
    breaker would stay open for as long as reads are async. A client that cannot be built
    (a Redis Cluster that does not answer) is the sync path's to report, under its breaker.
    """
    try:
        link = _link()
    except REDIS_ERRORS as exc:
        raise Deferred(f"no async client: {exc}") from exc
    if link.mget is None:
        raise Deferred("no async client for this connection")
    _gate()
    try:
        if link.closer is None:
            link.closer = _closing(link.client)
            await anext(link.closer)
        result = await link.mget(keys)
    except REDIS_ERRORS as exc:
        failed(exc, None)  # counted on the breaker, as a sync call's failure
    if breaker.failures:
        breaker.success()
    return result
