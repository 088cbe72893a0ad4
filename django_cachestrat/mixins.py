"""``CacheAsideMixin``: opt a model into cache-aside reads and delete-on-save invalidation."""

from __future__ import annotations

from typing import ClassVar

from .accessor import CachedDescriptor
from .options import CacheAsideBase

__all__ = ["CacheAsideMixin"]


class CacheAsideMixin(CacheAsideBase):
    """Adds ``Model.cached`` and nothing else: managers and fields are left as they are.

    Options go in a nested ``class CacheMeta`` (``timeout``, ``lookups``, ``strategy``,
    ``counters``, ``transparent``); entries in ``CACHESTRAT["MODELS"]`` win over it.
    """

    cached: ClassVar[CachedDescriptor] = CachedDescriptor()
