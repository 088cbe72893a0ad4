"""Circuit breakers, so a dead Redis server costs one timeout per cool-down, not per call.

One breaker guards the whole connection; on a Redis Cluster each node also has its own,
so a node that is down turns the cache off only for the keys it serves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

__all__ = [
    "CircuitBreaker",
    "ProcessBreaker",
    "State",
    "Unavailable",
    "breaker",
    "node_name",
    "recovered",
]

#: What :func:`django_cachestrat.client.breaker_states` reports for each server.
State = str  # "closed", "open" or "half-open"


class Unavailable(Exception):
    """Redis could not be used for this call; the caller serves from the database."""


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one probe through per cool-down.

    Closed: every call goes to Redis. Open: calls skip Redis until the cool-down ends. Then
    one caller probes (half-open); its success closes the breaker, its failure re-opens it.
    """

    def __init__(self, totals: CircuitBreaker | None = None) -> None:
        self._lock = threading.Lock()
        self._totals = totals  # where a node's errors and trips are added up
        self.failures = 0
        self.open_until = 0.0
        self.probing = False
        self.trips = 0
        self.errors = 0  # Redis errors met, for the statistics (which read them from here)

    @property
    def is_open(self) -> bool:
        return self.open_until > time.monotonic()

    @property
    def state(self) -> State:
        if not self.open_until:
            return "closed"
        if self.probing or self.open_until <= time.monotonic():
            return "half-open"  # a probe is on its way, or the next call is one
        return "open"

    def allow(self) -> bool:
        if not self.open_until:  # the common case: closed, no lock taken
            return True
        with self._lock:
            now = time.monotonic()
            if now < self.open_until:
                return False
            # Half-open: this caller probes; the others keep skipping Redis meanwhile.
            self.open_until = now + self._cooldown
            self.probing = True
            return True

    def give_back(self) -> None:
        """The probe this caller took goes unused (its call did not run): the next caller
        probes instead of waiting out another cool-down."""
        with self._lock:
            if self.probing:
                self.probing = False
                self.open_until = time.monotonic()

    def success(self) -> bool:
        """Record a success; True when it ends a failure streak (time to replay work)."""
        if not self.failures:
            return False
        with self._lock:
            recovered = self.failures > 0
            self.failures = 0
            self.open_until = 0.0
            self.probing = False
            return recovered

    def failure(self, threshold: int, cooldown: float) -> bool:
        """Record a failure; True when it opens the breaker."""
        with self._lock:
            self.failures += 1
            self.errors += 1
            self.probing = False
            self._cooldown = cooldown
            tripped = False
            if self.failures >= threshold:
                tripped = not self.open_until
                self.trips += tripped
                self.open_until = time.monotonic() + cooldown
        if self._totals is not None:
            self._totals.count(tripped)
        return tripped

    def count(self, tripped: bool) -> None:
        """Add a node's error (and trip) to this breaker's totals."""
        with self._lock:
            self.errors += 1
            self.trips += tripped

    def reset(self) -> None:
        with self._lock:
            self.failures = 0
            self.open_until = 0.0
            self.probing = False
            self.trips = 0
            self.errors = 0

    _cooldown = 5.0


class ProcessBreaker(CircuitBreaker):
    """The process's breaker: it guards the whole connection, holds one breaker per
    Redis Cluster node (made on first use), and its ``errors`` and ``trips`` add up its
    own and every node's, which is what the statistics publish."""

    def __init__(self) -> None:
        super().__init__()
        self.nodes: dict[str, CircuitBreaker] = {}

    def node(self, name: str) -> CircuitBreaker:
        """The breaker of the node called ``name`` ("host:port")."""
        found = self.nodes.get(name)
        if found is None:
            with self._lock:
                found = self.nodes.setdefault(name, CircuitBreaker(totals=self))
        return found

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self.nodes = {}


def recovered(probes: Iterable[CircuitBreaker]) -> None:
    """The nodes that ``Topology.guard`` let a call probe answered it: close their breakers."""
    for probe in probes:
        probe.success()


def node_name(host: str, port: int | str) -> str:
    """How a server is named in breaker states: "host:port"."""
    return f"{host}:{port}"


#: The process's breaker, shared by its threads.
breaker = ProcessBreaker()
