"""The Redis layer: the connection (django-redis or ``CONNECTION``), Lua scripts, fail-open."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar

from django.core.cache import InvalidCacheBackendError, caches
from django.utils.module_loading import import_string
from redis.cluster import RedisCluster
from redis.exceptions import NoScriptError, RedisClusterException, RedisError

from . import tracing
from .breaker import State, Unavailable, breaker
from .cluster import Cluster
from .conf import conf
from .topology import NodeDown, ReplicaLag, Single, failed_node

__all__ = [
    "Unavailable",
    "breaker",
    "breaker_states",
    "connection",
    "fail_open",
    "new_generation",
    "scripts",
]

logger = logging.getLogger("django_cachestrat")

P = ParamSpec("P")
R = TypeVar("R")

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
        built = topology_for(_build())
        for hook in on_connect:  # eviction.warn_at_startup: one INFO, with counters only
            hook(built.primaries())
        _topology, _built_with = built, settings_now
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


def reset() -> None:
    """Forget the connection (settings changed)."""
    global _topology
    _topology = None


def new_generation() -> str:
    """A generation value no payload has carried: random, so a generation key that Redis
    evicted (or lost in a failover) never comes back with a value that old rows carry."""
    return os.urandom(8).hex()


def fail_open(func: Callable[P, R]) -> Callable[P, R]:
    """Run a Redis operation under the breaker; failures become :class:`Unavailable`.

    With ``FAIL_OPEN = False`` the Redis error reaches the caller instead.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if not breaker.allow():
            raise Unavailable("circuit breaker open")
        try:
            if pending.waiting:  # deletes that missed Redis go first, before any read
                pending.replay(wait=False)
            if (
                pending.unconfirmed_keys
                or pending.unconfirmed_generations
                or pending.unconfirmed_calls
            ):
                pending.resend_unconfirmed()  # a failover may have lost them
            result = func(*args, **kwargs)
        except ReplicaLag:
            raise  # the primary took the write; the caller keeps it for after a failover
        except NodeDown as exc:
            if exc.failed:
                _failed(exc, exc.node)
            if not conf.FAIL_OPEN:
                raise
            raise Unavailable(str(exc)) from exc  # known down: skipped, nothing to count
        except REDIS_ERRORS as exc:
            # On a cluster the node the error came from is blamed, not the connection.
            cluster = _topology is not None and _topology.is_cluster
            _failed(exc, failed_node(exc) if cluster else None)
        if breaker.failures:
            breaker.success()
        return result

    return wrapper


def _failed(exc: BaseException, node: str | None) -> NoReturn:
    """Count a failure on the node's breaker (or the connection's), then fail open."""
    pending.expect_records()
    failing = breaker.node(node) if node else breaker
    failing.failure(conf.BREAKER_THRESHOLD, conf.BREAKER_COOLDOWN)  # counts it too
    logger.warning("Redis unavailable, serving from the database: %s", exc)
    if not conf.FAIL_OPEN:
        raise exc
    raise Unavailable(str(exc)) from exc


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


class Script:
    """One Lua script from ``lua/``, run by EVALSHA and loaded again after a Redis restart."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = resources.files(__package__).joinpath(f"lua/{name}.lua").read_text()
        self.sha = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        self._sha = self.sha.encode()  # bytes go out as they are: redis-py encodes no copy

    def __call__(self, client: Any, keys: Sequence[str | bytes], args: Sequence[Any]) -> Any:
        # One EVALSHA, no pipeline object: this is the write-behind increment's hot path.
        try:
            return client.evalsha(self._sha, len(keys), *keys, *args)
        except NoScriptError:
            client.script_load(self.source)
            return client.evalsha(self._sha, len(keys), *keys, *args)


Call = tuple[Script, Sequence[str], Sequence[Any]]


def run_many(
    client: Any, calls: Sequence[Call], reads: Sequence[str] = (), wait: bool = False
) -> list[Any]:
    """Run script calls in one pipelined round trip (two if Redis lost its script cache).

    ``reads``: keys to ``GET`` in the same round trip, before the scripts; their values
    come first in the result. On a cluster the pipeline routes each command by its keys
    (every script touches one slot) and sends to all nodes before reading; ``SCRIPT LOAD``
    goes to every primary. ``wait``: then ``WAIT 1`` on every primary written to that has a
    replica, in the same pipeline; :class:`ReplicaLag` if one was not acknowledged in time
    (the calls ran).
    """
    results: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    # The app's own connection has its topology already (built once: for a Sentinel
    # primary, building one asks the sentinels for replicas).
    shape = _topology if _topology is not None and _topology.client is client else None
    shape = shape or topology_for(client)
    if not reads and len(calls) == 1 and calls[0][1] and isinstance(shape, Cluster):
        script, keys, args = calls[0]  # straight to its node
        answer = shape.run_script(script.sha, keys, args, wait)
        if answer is not None:
            if not answer[1]:
                raise ReplicaLag()
            return [answer[0]]
    shape.guard(keys[0] for _, keys, _ in calls if keys)  # every script: one slot
    targets = shape.wait_targets(keys[0] for _, keys, _ in calls if keys) if wait else []
    acknowledged: list[Any] = []
    values: list[Any] = []
    for attempt in (1, 2):
        pipe = shape.pipeline()
        if attempt == 1:
            for key in reads:
                pipe.get(key)
        for i in todo:
            script, keys, args = calls[i]
            pipe.evalsha(script.sha, len(keys), *keys, *args)
        shape.add_waits(pipe, targets)
        out = pipe.execute(raise_on_error=False)
        if attempt == 1:
            values, out = out[: len(reads)], out[len(reads) :]
            for value in values:
                if isinstance(value, Exception):
                    raise value
        out, acknowledged = out[: len(todo)], out[len(todo) :]
        missing = []
        for i, reply in zip(todo, out, strict=True):
            if isinstance(reply, NoScriptError) and attempt == 1:
                missing.append(i)
            elif isinstance(reply, Exception):
                raise reply
            results[i] = reply
        if not missing:
            break
        for script in {calls[i][0] for i in missing}:
            client.script_load(script.source)
        todo = missing
    for count in acknowledged:
        if isinstance(count, Exception):
            raise count
        if int(count) < 1:
            raise ReplicaLag()
    return [*values, *results]


class _Scripts:
    """The Lua scripts, each in its own file under ``lua/``."""

    def __init__(self) -> None:
        self.lease = Script("lease")
        self.fill = Script("fill")
        self.release = Script("release")
        self.incr = Script("incr")
        self.claim = Script("claim")
        self.ack = Script("ack")
        self.counts = Script("counts")
        self.cancel = Script("cancel")

    run_many = staticmethod(run_many)


scripts = _Scripts()


def send_invalidations(
    keys: Iterable[str], generations: Iterable[str], marks: Iterable[str] = (), lag_ms: int = 0
) -> None:
    """Delete keys and give generations new values in one pipelined round trip; set
    ``marks`` for ``lag_ms`` first (replicas.py), so no reader sees a key gone and its
    marker not set."""
    keys, sets = list(keys), {generation: new_generation() for generation in generations}
    with tracing.invalidation_span(keys, sets):
        topology().invalidate(keys, sets, marks, lag_ms)


class Records(Protocol):
    """A store of missed invalidations shared by every process."""

    def record(self, keys: Iterable[str], generations: Iterable[str]) -> None: ...

    def replay(self) -> int: ...


class NoRecords:
    """Before the app is ready: nothing is kept beyond this process."""

    def record(self, keys: Iterable[str], generations: Iterable[str]) -> None:
        pass

    def replay(self) -> int:
        return 0


class PendingInvalidations:
    """Deletes that could not reach Redis, replayed once it answers again.

    Each one is also recorded in the database (``durable.py``), so that a process that
    exits before Redis answers leaves them to the others. A process replays the database's
    records at its first Redis call, and at its first call that reaches Redis after any
    Redis error it met.

    Bounded: past ``LIMIT`` keys the affected models are flushed instead (one SET each).
    """

    LIMIT = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Held while a replay is on its way to Redis: until Redis has acknowledged the
        # deletes, no other thread may read the cache (it would see the old rows).
        self._replaying = threading.Lock()
        self.keys: set[str] = set()
        self.generations: set[str] = set()
        self.calls: list[Call] = []  # script calls to settle write-behind increments
        self.unconfirmed_keys: set[str] = set()  # taken by a primary, no replica confirmed
        self.unconfirmed_generations: dict[str, str] = {}  # generation key -> value sent
        self.unconfirmed_calls: list[Call] = []  # settle calls no replica confirmed yet
        self.durable = True  # the database's records are still to be replayed
        self.waiting = True  # read without the lock on every Redis call
        # Where missed invalidations are kept for every process: the database's table,
        # plugged in when the app is ready (``durable.install``), since this layer sits
        # below the models.
        self.records: Records = NoRecords()

    def add(self, keys: Iterable[str], generations: Iterable[str], fallback: Iterable[str]) -> None:
        """Keep keys to delete and generations to bump; ``fallback`` generations stand in
        for the keys once too many are pending."""
        keys, generations = list(keys), list(generations)
        with self._lock:
            self.generations.update(generations)
            if len(self.keys) < self.LIMIT:
                self.keys.update(keys)
            else:
                generations += fallback
                keys = []
                self.generations.update(fallback)
            self.durable = self.waiting = True
        self.records.record(keys, generations)

    def expect_records(self) -> None:
        """Redis failed: other processes may record deletes they cannot send meanwhile,
        so the first call that reaches Redis again replays the database's records."""
        with self._lock:
            self.durable = self.waiting = True

    def add_unconfirmed(self, lag: ReplicaLag) -> None:
        """Deletes the primary took but no replica confirmed in time (``WAIT``): reads go
        on, since the primary has them. Each call sends them again first, without waiting
        (after a failover, that reaches the new primary before any read), and at most every
        ``CONFIRM_EVERY`` seconds with a ``WAIT``, whose success forgets them. Generations
        go again with the very values sent, so a resend flushes nothing more."""
        with self._lock:
            if len(self.unconfirmed_keys) < self.LIMIT:
                self.unconfirmed_keys.update(lag.keys)
            self.unconfirmed_generations.update(lag.sets)

    CONFIRM_EVERY = 2.0
    _confirmed_at = 0.0

    def resend_unconfirmed(self) -> None:
        """Send the unconfirmed deletes and settle calls again (see
        :meth:`add_unconfirmed`); a settle call acts once however often it runs."""
        with self._lock:
            keys, sets = list(self.unconfirmed_keys), dict(self.unconfirmed_generations)
            calls = list(self.unconfirmed_calls)
        if not (keys or sets or calls):
            return
        confirm = time.monotonic() - self._confirmed_at >= self.CONFIRM_EVERY
        # Deletes first, whatever the settle calls meet: they must reach a new primary
        # before this call reads.
        deletes = (keys or sets) and self._resend(
            lambda: topology().invalidate(keys, sets, wait=confirm)
        )
        settles = calls and self._resend(lambda: run_many(connection(), calls, wait=confirm))
        if not confirm:
            return
        with self._lock:  # what a replica holds now is forgotten
            if deletes:
                self.unconfirmed_keys.difference_update(keys)
                for key in sets:
                    self.unconfirmed_generations.pop(key, None)
            if settles:
                del self.unconfirmed_calls[: len(calls)]

    def _resend(self, send: Callable[[], object]) -> bool:
        """Send; False when no replica acknowledged it (asked again in CONFIRM_EVERY)."""
        try:
            send()
        except ReplicaLag:
            self._confirmed_at = time.monotonic()
            return False
        return True

    def add_call(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
            self.waiting = True

    def __bool__(self) -> bool:
        return bool(self.keys or self.generations or self.calls)

    def replay(self, wait: bool = True) -> None:
        """Send what is pending; on a Redis error keep it all and let the error rise.

        While another thread replays, ``wait=False`` raises :class:`Unavailable` at once
        (the caller reads the database) instead of waiting for Redis.
        """
        if not self._replaying.acquire(blocking=wait):
            raise Unavailable("missed invalidations are being replayed")
        try:
            self._replay()
        finally:
            self._replaying.release()

    def _replay(self) -> None:
        with self._lock:
            keys, gens, calls, durable = self.keys, self.generations, self.calls, self.durable
            self.keys, self.generations, self.calls, self.durable = set(), set(), [], False
        count = len(keys) + len(gens) + len(calls)
        try:
            if calls:
                # Where a failover can promote a replica, a settle call counts as done
                # once a replica holds it (like the increment it settles): until then it
                # is sent again, with the unconfirmed deletes.
                try:
                    run_many(connection(), calls, wait=topology().may_lag)
                except ReplicaLag:
                    with self._lock:
                        self.unconfirmed_calls.extend(calls)
                calls = []  # they ran: keep only the invalidations if those fail
            if keys or gens:
                try:
                    send_invalidations(keys, gens)
                except ReplicaLag as lag:  # on the primary, not on a replica: see add_unconfirmed
                    self.add_unconfirmed(lag)
                keys, gens = set(), set()
            if durable:
                try:
                    self.records.replay()
                except (Unavailable, ReplicaLag):  # inside a transaction, or no replica yet
                    with self._lock:
                        self.durable = True
                durable = False
        except REDIS_ERRORS:
            with self._lock:  # still down: keep them for the next call
                self.keys |= keys
                self.generations |= gens
                self.calls[:0] = calls
                self.durable |= durable
            raise
        with self._lock:  # only now may other threads read: the deletes have landed
            self.waiting = bool(self.keys or self.generations or self.calls) or self.durable
        if count:
            logger.info("Replayed %d pending operations after Redis recovered", count)

    def clear(self) -> None:
        with self._lock:
            self.keys, self.generations, self.calls = set(), set(), []
            self.unconfirmed_keys, self.unconfirmed_generations = set(), {}
            self.unconfirmed_calls = []
            self.durable = self.waiting = False


pending = PendingInvalidations()
