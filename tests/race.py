"""A race harness: readers and writers on one row, with random pauses between every step.

A read is *stale* when it returns a version older than the last write whose commit had
returned before the read began (DESIGN invariant 1). The same harness drives our cache and
the naive GET / query / SETEX pattern, so it is shown to catch staleness when it exists.
"""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, transaction
from django_redis import get_redis_connection

from django_cachestrat import invalidation, leases, reads
from tests.testapp.models import Profile


class Pauses:
    """Sleeps at a named step with some probability, up to ``max_ms``."""

    def __init__(self, probability: float, max_ms: float) -> None:
        self.probability = probability
        self.max_ms = max_ms

    def __call__(self, step: str) -> None:
        if self.probability and random.random() < self.probability:
            time.sleep(random.uniform(0, self.max_ms) / 1000)


def _write(pk: int, pause: Pauses) -> int:
    with transaction.atomic():
        row = Profile.objects.select_for_update().get(pk=pk)
        row.age += 1
        pause("write:before-save")
        row.save(update_fields=["age"])
        pause("write:before-commit")
    return int(row.age)


class Ours:
    name = "django-cachestrat"

    def __init__(self, pause: Pauses) -> None:
        self.pause = pause

    def read(self, pk: int) -> int:
        return int(Profile.cached.get(pk=pk).age)

    def write(self, pk: int) -> int:
        return _write(pk, self.pause)

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

    def __init__(self, pause: Pauses) -> None:
        self.pause = pause

    def read(self, pk: int) -> int:
        client = get_redis_connection("default")
        raw = client.get(f"naive:{pk}")
        if raw is not None:
            return int(raw)
        self.pause("read:after-miss")
        age = Profile.objects.values_list("age", flat=True).get(pk=pk)
        self.pause("read:before-fill")
        client.set(f"naive:{pk}", age, ex=3600)
        return int(age)

    def write(self, pk: int) -> int:
        age = _write(pk, self.pause)
        self.pause("write:before-delete")
        get_redis_connection("default").delete(f"naive:{pk}")
        return age

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
