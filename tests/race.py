"""A race harness: readers and writers on one row, with random pauses between every step.

A read is *stale* when it returns a version older than the last write whose commit had
returned before the read began (DESIGN invariant 1). The same harness drives our cache and
the naive GET / query / SETEX pattern, so it is shown to catch staleness when it exists.

The row's version is an integer field that every write increments. Any cached model and
integer field will do (``model=``, ``field=``); the default, the test app's
``Profile.age``, is imported only when used, so the benchmarks can run this harness under
settings where the test app is not installed.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, models, router, transaction
from django_redis import get_redis_connection

from django_cachestrat import invalidation, leases, reads

DEFAULT_FIELD = "age"


def default_model() -> type[models.Model]:
    """The test app's ``Profile``, imported on first use."""
    from tests.testapp.models import Profile

    return Profile


class Pauses:
    """Sleeps at a named step with some probability, up to ``max_ms``."""

    def __init__(self, probability: float, max_ms: float) -> None:
        self.probability = probability
        self.max_ms = max_ms

    def __call__(self, step: str) -> None:
        if self.probability and random.random() < self.probability:
            time.sleep(random.uniform(0, self.max_ms) / 1000)


class Versioned:
    """The row's model and the integer field that carries its version."""

    def __init__(self, model: type[models.Model] | None, field: str) -> None:
        self.model: Any = model if model is not None else default_model()
        self.field = field

    def write(self, pk: int, pause: Pauses) -> int:
        """Increment the version in a transaction; returns the version committed."""
        with transaction.atomic(using=router.db_for_write(self.model)):
            row = self.model._default_manager.select_for_update().get(pk=pk)
            setattr(row, self.field, getattr(row, self.field) + 1)
            pause("write:before-save")
            row.save(update_fields=[self.field])
            pause("write:before-commit")
        return int(getattr(row, self.field))


class Ours:
    name = "django-cachestrat"

    def __init__(
        self,
        pause: Pauses,
        model: type[models.Model] | None = None,
        field: str = DEFAULT_FIELD,
    ) -> None:
        self.pause = pause
        self.row = Versioned(model, field)

    def read(self, pk: int) -> int:
        return int(getattr(self.row.model.cached.get(pk=pk), self.row.field))

    def write(self, pk: int) -> int:
        return self.row.write(pk, self.pause)

    @contextmanager
    def instrumented(self) -> Iterator[None]:
        """Pause before every Redis and database step of our read and write paths."""
        originals = {
            (leases, "_leases"): leases._leases,
            (leases, "_store"): leases._store,
            (reads, "_db_rows"): reads._db_rows,
            (reads, "_mget"): reads._mget,
            (invalidation, "_send"): invalidation._send,
        }
        for (module, name), func in originals.items():
            setattr(module, name, self._paused(f"{module.__name__}.{name}", func))
        try:
            yield
        finally:
            for (module, name), func in originals.items():
                setattr(module, name, func)

    def _paused(self, step: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.pause(f"{step}:before")
            result = func(*args, **kwargs)
            self.pause(f"{step}:after")
            return result

        return wrapper


class Naive:
    """The hand-written cache-aside: GET; on a miss, query and SETEX; delete after save."""

    name = "naive cache-aside"

    def __init__(
        self,
        pause: Pauses,
        model: type[models.Model] | None = None,
        field: str = DEFAULT_FIELD,
    ) -> None:
        self.pause = pause
        self.row = Versioned(model, field)

    @staticmethod
    def key(pk: int) -> str:
        return f"naive:{pk}"

    def read(self, pk: int) -> int:
        client = get_redis_connection("default")
        raw = client.get(self.key(pk))
        if raw is not None:
            return int(raw)
        self.pause("read:after-miss")
        rows = self.row.model._default_manager.values_list(self.row.field, flat=True)
        value = rows.get(pk=pk)
        self.pause("read:before-fill")
        client.set(self.key(pk), value, ex=3600)
        return int(value)

    def write(self, pk: int) -> int:
        value = self.row.write(pk, self.pause)
        self.pause("write:before-delete")
        get_redis_connection("default").delete(self.key(pk))
        return value

    @contextmanager
    def instrumented(self) -> Iterator[None]:
        yield


class Tally:
    """Counters shared by threads or forked processes."""

    def __init__(self) -> None:
        self.committed = multiprocessing.Value("q", 0)
        self.reads = multiprocessing.Value("q", 0)
        self.stale = multiprocessing.Value("q", 0)
        self.writes = multiprocessing.Value("q", 0)
        self.done = multiprocessing.Event()


def writer(impl: Any, pk: int, writes: int, tally: Tally) -> None:
    try:
        for _ in range(writes):
            version = impl.write(pk)
            with tally.committed.get_lock():  # the commit has returned: reads must see it
                tally.committed.value = max(tally.committed.value, version)
            with tally.writes.get_lock():
                tally.writes.value += 1
    finally:
        tally.done.set()
        connections.close_all()


def reader(impl: Any, pk: int, tally: Tally) -> None:
    try:
        while not tally.done.is_set():
            floor = tally.committed.value
            version = impl.read(pk)
            with tally.reads.get_lock():
                tally.reads.value += 1
            if version < floor:
                with tally.stale.get_lock():
                    tally.stale.value += 1
    finally:
        connections.close_all()


def run(impl: Any, pk: int, writes: int, readers: int, processes: bool) -> Tally:
    """One writer and ``readers`` readers on row ``pk``, as threads or forked processes."""
    tally = Tally()
    if processes:
        connections.close_all()  # children must open their own connections
        ctx = multiprocessing.get_context("fork")
        workers: list[Any] = [
            ctx.Process(target=reader, args=(impl, pk, tally)) for _ in range(readers)
        ]
        workers.append(ctx.Process(target=writer, args=(impl, pk, writes, tally)))
    else:
        workers = [threading.Thread(target=reader, args=(impl, pk, tally)) for _ in range(readers)]
        workers.append(threading.Thread(target=writer, args=(impl, pk, writes, tally)))
    with impl.instrumented():
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
    return tally
