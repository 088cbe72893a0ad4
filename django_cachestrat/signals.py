"""Public signals, sent with the model class as sender.

``hit`` and ``miss`` cost one attribute test on the read path while nothing listens.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["flushed", "hit", "invalidated", "miss"]

#: Rows were served from Redis (``pks``).
hit = Signal()
#: Rows were not in Redis and were read from the database (``pks``).
miss = Signal()
#: Rows were dropped from the cache after their change committed (``pks``).
invalidated = Signal()
#: A model's whole namespace was dropped.
flushed = Signal()
