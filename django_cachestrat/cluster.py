"""Redis Cluster operations: reads by node through redis-py's slot table, per-node breakers,
generation copies, and writes that wait for a replica of each primary written to."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from redis.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TimeoutError,
    TryAgainError,
)

from .breaker import CircuitBreaker, breaker, recovered
from .topology import NodeDown, ReplicaLag, Single, replica_wait_ms

__all__ = ["GENERATION_COPIES", "Cluster", "copy_key"]

#: On a Redis Cluster, how many copies each row generation has, in fixed hash slots, so
#: that nearly every primary holds one (see ``Cluster.home``).
GENERATION_COPIES = 64
#: How row generation keys end (``KeySpace.generation``): those get copies on a cluster.
ROW_GENERATION_SUFFIX = ":gen"


def copy_key(generation: str, index: int) -> str:
    """Copy ``index`` of a row generation: the hash tag alone picks its slot, the same
    for every model, so a node's copies of all models share one slot."""
    return f"{generation}:{{g{index}}}"


class Cluster(Single):
    """A Redis Cluster through redis-py's ``RedisCluster`` (its slot table and redirects)."""

    is_cluster = True
    may_lag = True

    def __init__(self, client: RedisCluster) -> None:
        self.client = client
        self.wait_ms = replica_wait_ms(client.nodes_manager.connection_kwargs)
        self._keyslot: Callable[[str], int] = client.keyslot
        self._node_of: Callable[[int], Any] = client.nodes_manager.get_node_from_slot
        self._copy_slots = [key_slot(copy_key("", i).encode()) for i in range(GENERATION_COPIES)]
        self._copies: dict[str, int] = {}  # node name -> the copy it holds

    def home(self, generation: str, key: str) -> str:
        """The copy of ``generation`` on the node that serves ``key``, so a one-row hit
        reads one node; the generation key itself when that node holds no copy."""
        name = self._node_of(self._keyslot(key)).name
        index = self._copies.get(name)
        if index is None or self._node_of(self._copy_slots[index]).name != name:
            index = self._place_copies().get(name)  # the slot table changed since
            if index is None:
                return generation
        return copy_key(generation, index)

    def _place_copies(self) -> dict[str, int]:
        """Which copy each primary holds: the first whose slot it serves."""
        copies: dict[str, int] = {}
        for index, slot in enumerate(self._copy_slots):
            with contextlib.suppress(SlotNotCoveredError):
                copies.setdefault(self._node_of(slot).name, index)
        self._copies = copies
        return copies

    def with_copies(self, sets: Mapping[str, str]) -> dict[str, str]:
        """``sets`` with every copy of each row generation given the same value."""
        expanded = dict(sets)
        for key, value in sets.items():
            if key.endswith(ROW_GENERATION_SUFFIX):
                for index in range(GENERATION_COPIES):
                    expanded[copy_key(key, index)] = value
        return expanded

    def mget(self, keys: list[str]) -> list[Any]:
        """One MGET per slot, written to every node before any reply is read.

        NOTE: the generation key and the rows it guards live in different slots. Slots are
        found by redis-py's own table; a node whose breaker is open is not tried (its keys
        are served from the database), and a redirect (a slot that moved) is left to
        redis-py's ``mget_nonatomic``, which follows it and refreshes the table.
        """
        nodes = self._plan(keys)
        probes = self._probe(nodes) if breaker.nodes else []
        values: list[Any] = [None] * len(keys)
        sent: list[tuple[Any, Any, list[list[int]]]] = []
        name = ""
        try:
            for name, (node, groups) in nodes.items():  # noqa: B007 (named by the except)
                pool = self.client.get_redis_connection(node).connection_pool
                conn = pool.get_connection()
                sent.append((conn, pool, groups))
                commands = [("MGET", *[keys[i] for i in group]) for group in groups]
                conn.send_packed_command(conn.pack_commands(commands))
            for (conn, _, groups), reading in zip(sent, nodes, strict=False):
                name = reading  # for the except clauses below
                for group in groups:
                    for i, value in zip(group, conn.read_response(), strict=True):
                        values[i] = value
        except (MovedError, AskError, TryAgainError):
            _release(sent, broken=True)
            values = list(self.client.mget_nonatomic(keys))
        except (ConnectionError, TimeoutError) as exc:
            _release(sent, broken=True)
            self.refresh()
            raise NodeDown(name, failed=True) from exc
        except BaseException:
            _release(sent, broken=True)
            raise
        else:
            _release(sent, broken=False)
        recovered(probes)
        return values

    def run_script(
        self, sha: str, keys: Sequence[str], args: Sequence[Any], wait: bool
    ) -> tuple[Any, bool] | None:
        """One ``EVALSHA`` on the node of its keys' slot, then (``wait``, if the slot has a
        replica) ``WAIT 1`` on the same connection, in one write: ``(result, acknowledged)``.

        None when it must go through redis-py's cluster pipeline instead: a redirect, or a
        script the node has not loaded (nothing ran then)."""
        slot = self._keyslot(keys[0])
        node = self._node_at(slot)
        probes = self._probe([node.name]) if breaker.nodes else []
        commands: list[tuple[Any, ...]] = [("EVALSHA", sha, len(keys), *keys, *args)]
        if wait and len(self.client.nodes_manager.slots_cache.get(slot) or []) > 1:
            commands.append(("WAIT", 1, self.wait_ms))
        pool = self.client.get_redis_connection(node).connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            replies = [_reply(conn) for _ in commands]
        except (ConnectionError, TimeoutError) as exc:
            conn.disconnect()
            self.refresh()
            raise NodeDown(node.name, failed=True) from exc
        finally:
            pool.release(conn)
        recovered(probes)  # it answered, if only with a redirect
        result = replies[0]
        if isinstance(result, MovedError | AskError | TryAgainError | NoScriptError):
            return None
        if isinstance(result, Exception):
            raise result
        return result, len(replies) == 1 or int(replies[1]) >= 1

    def _plan(self, keys: list[str]) -> dict[str, tuple[Any, list[list[int]]]]:
        """The keys' positions, by node and, within a node, by slot."""
        by_slot: dict[int, list[int]] = {}
        for i, key in enumerate(keys):
            by_slot.setdefault(self._keyslot(key), []).append(i)
        nodes: dict[str, tuple[Any, list[list[int]]]] = {}
        for slot, group in by_slot.items():
            try:
                node = self._node_at(slot)
            except NodeDown:  # no primary for it (yet): a miss, not an error
                self.refresh()
                raise
            nodes.setdefault(node.name, (node, []))[1].append(group)
        return nodes

    _refreshed = 0.0

    def refresh(self) -> None:
        """Ask the cluster for its slot table again (at most once a second): after a node
        failed, a replica may have taken its slots over."""
        if time.monotonic() - self._refreshed < 1.0:
            return
        self._refreshed = time.monotonic()
        with contextlib.suppress(RedisError, RedisClusterException):
            self.client.nodes_manager.initialize()

    def pipeline(self) -> Any:
        return self.client.pipeline()

    def _by_slot(self, keys: Iterable[str]) -> dict[int, list[str]]:
        groups: dict[int, list[str]] = {}
        for key in keys:
            groups.setdefault(self.client.keyslot(key), []).append(key)
        return groups

    def guard(self, keys: Iterable[str]) -> list[CircuitBreaker]:
        """:class:`NodeDown` if a node the keys live on has an open breaker; else the
        breakers of the nodes this call probes, for ``recovered()`` once they answered.

        Each node's breaker is asked once, however many of the keys' slots it serves: in
        half-open, the first ask is the probe, and a second would refuse the very call
        that probes (its outcome then never recorded, the node never tried again). A
        node that refuses the call gives back the probes already taken for it.
        """
        if not breaker.nodes:  # no node has failed in this process: nothing to look up
            return []
        slots = {self._keyslot(key) for key in keys}
        return self._probe({self._node_at(slot).name for slot in slots})

    def _node_at(self, slot: int) -> Any:
        """The primary serving ``slot``; :class:`NodeDown` while none does."""
        try:
            return self._node_of(slot)
        except SlotNotCoveredError:
            raise NodeDown(f"slot {slot}", failed=False) from None

    @staticmethod
    def _probe(names: Iterable[str]) -> list[CircuitBreaker]:
        """Ask each named node's breaker once (see :meth:`guard`)."""
        probes: list[CircuitBreaker] = []
        for name in names:
            node_breaker = breaker.nodes.get(name)
            if node_breaker is None or not node_breaker.failures:
                continue
            if not node_breaker.allow():
                for taken in probes:
                    taken.give_back()
                raise NodeDown(name, failed=False)
            probes.append(node_breaker)
        return probes

    def delete(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        probes = self.guard(keys)
        groups = self._by_slot(keys)
        if groups:
            pipe = self.pipeline()
            for group in groups.values():
                pipe.execute_command("DEL", *group)
            pipe.execute()
        recovered(probes)

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
        keys, marks, asked = list(keys), list(marks), sets
        sets = self.with_copies(asked)
        # A node known down is not waited for: the invalidation is kept and replayed.
        probes = self.guard([*keys, *marks, *sets])
        pipe = self.pipeline()
        primaries: dict[str, Any] = {}
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
            pipe.execute_command("WAIT", 1, self.wait_ms, target_nodes=node)
        out = pipe.execute()
        recovered(probes)
        acknowledged = out[len(out) - len(primaries) :]
        if any(int(count) < 1 for count in acknowledged):
            raise ReplicaLag(keys, asked)

    def wait_targets(self, keys: Iterable[str]) -> list[Any]:
        primaries: dict[str, Any] = {}
        for key in keys:
            self._replicated(self._keyslot(key), primaries)
        return list(primaries.values())

    def add_waits(self, pipe: Any, targets: list[Any]) -> None:
        for node in targets:  # in the cluster pipeline: after the writes, on their connection
            pipe.execute_command("WAIT", 1, self.wait_ms, target_nodes=node)

    def _replicated(self, slot: int, primaries: dict[str, Any]) -> None:
        nodes = self.client.nodes_manager.slots_cache.get(slot) or []
        if len(nodes) > 1:  # the primary and its replicas, as the slot table lists them
            primaries.setdefault(nodes[0].name, nodes[0])

    def primaries(self) -> list[Any]:
        return [self.client.get_redis_connection(node) for node in self.client.get_primaries()]

    def names(self) -> list[str]:
        return sorted(node.name for node in self.client.get_primaries())


def _reply(conn: Any) -> Any:
    """The next reply on a connection; an error reply is returned, not raised."""
    try:
        return conn.read_response()
    except ResponseError as exc:
        return exc


def _release(sent: list[tuple[Any, Any, list[list[int]]]], broken: bool) -> None:
    """Give the connections back; one whose replies were not all read is closed first."""
    for conn, pool, _ in sent:
        if broken:
            conn.disconnect()
        pool.release(conn)
