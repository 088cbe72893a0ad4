"""Public signals: sent with the model class as sender."""

from __future__ import annotations

from django.dispatch import Signal

__all__ = ["flushed", "invalidated"]

#: Rows were dropped from the cache after their change committed (``pks``).
invalidated = Signal()
#: A model's whole namespace was dropped.
flushed = Signal()
