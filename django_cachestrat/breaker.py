"""A per-process circuit breaker, so a dead Redis costs one timeout per cool-down, not per call."""

from __future__ import annotations

import threading
import time

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; lets one probe through per cool-down.

    Closed: every call goes to Redis. Open: calls skip Redis until the cool-down ends. Then
    one caller probes (half-open); its success closes the breaker, its failure re-opens it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.failures = 0
        self.open_until = 0.0
        self.trips = 0
        self.errors = 0  # Redis errors met, for the statistics (which read them from here)

    @property
    def is_open(self) -> bool:
        return self.open_until > time.monotonic()

    def allow(self) -> bool:
        if not self.open_until:  # the common case: closed, no lock taken
            return True
        with self._lock:
            now = time.monotonic()
            if now < self.open_until:
                return False
            # Half-open: this caller probes; the others keep skipping Redis meanwhile.
            self.open_until = now + self._cooldown
            return True

    def success(self) -> bool:
        """Record a success; True when it ends a failure streak (time to replay work)."""
        if not self.failures:
            return False
        with self._lock:
            recovered = self.failures > 0
            self.failures = 0
            self.open_until = 0.0
            return recovered

    def failure(self, threshold: int, cooldown: float) -> bool:
        """Record a failure; True when it opens the breaker."""
        with self._lock:
            self.failures += 1
            self.errors += 1
            self._cooldown = cooldown
            if self.failures < threshold:
                return False
            tripped = not self.open_until
            self.trips += tripped
            self.open_until = time.monotonic() + cooldown
            return tripped

    def reset(self) -> None:
        with self._lock:
            self.failures = 0
            self.open_until = 0.0
            self.trips = 0
            self.errors = 0

    _cooldown = 5.0
