"""Invalidations sent to Redis, and those that missed it: kept, recorded and replayed."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from . import tracing
from .breaker import Unavailable
from .client import REDIS_ERRORS, connection, topology
from .scripts import Call, run_many
from .topology import ReplicaLag

__all__ = [
    "NoRecords",
    "PendingInvalidations",
    "Records",
    "new_generation",
    "pending",
    "send_invalidations",
]

logger = logging.getLogger("django_cachestrat")


def new_generation() -> str:
    """A generation value no payload has carried: random, so a generation key that Redis
    evicted (or lost in a failover) never comes back with a value that old rows carry."""
    return os.urandom(8).hex()


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
