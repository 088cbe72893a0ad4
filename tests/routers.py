"""A per-request database router, as multi-tenant projects write them: a context variable
names the database of the request (and, for reads, a replica of it)."""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

#: (read alias, write alias) of the current request; None: Django's default.
current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "tests_database", default=None
)


#: Like ``current``, for every thread (threads start with an empty context): the race tests.
everywhere: tuple[str, str] | None = None


@contextmanager
def in_every_thread(read: str, write: str) -> Iterator[None]:
    """Route every thread's reads to ``read`` and writes to ``write`` in the block."""
    global everywhere
    everywhere = (read, write)
    try:
        yield
    finally:
        everywhere = None


@contextmanager
def using(read: str, write: str | None = None) -> Iterator[None]:
    """Route reads to ``read`` and writes to ``write`` (by default ``read``) in the block."""
    token = current.set((read, write or read))
    try:
        yield
    finally:
        current.reset(token)


class ContextRouter:
    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        routed = current.get() or everywhere
        return routed[0] if routed else None

    def db_for_write(self, model: Any, **hints: Any) -> str | None:
        routed = current.get() or everywhere
        return routed[1] if routed else None

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool | None:
        return None
