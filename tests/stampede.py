"""A stampede: many readers miss one hot row at once; the database counts the queries.

Any cached model will do (``model=``); the default, the test app's ``Profile``, is imported
only when used. ``read=`` replaces the cached read, so other caching patterns (the naive
GET / query / SET of :mod:`tests.race`) can be counted the same way.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection, connections, models

from tests.race import default_model


def _cached_read(model: Any) -> Callable[[int], Any]:
    def read(pk: int) -> Any:
        row = model.cached.get(pk=pk)
        assert row.pk == pk
        return row

    return read


def _counting_reader(
    read: Callable[[int], Any],
    table: str,
    pk: int,
    start: Any,
    queries: Any,
    slow_ms: float,
    meet: Any,
) -> None:
    def counter(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if sql.startswith("SELECT") and f'FROM "{table}"' in sql:
            with queries.get_lock():
                queries.value += 1
            if meet is not None:  # no query ends before every reader has queried
                meet.wait(30)
            else:
                time.sleep(slow_ms / 1000)  # a slow query widens the window every reader hits
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(counter):
            start.wait(30)
            read(pk)
    finally:
        connections.close_all()


def stampede(
    pk: int,
    readers: int,
    processes: bool,
    slow_ms: float = 50,
    *,
    model: type[models.Model] | None = None,
    read: Callable[[int], Any] | None = None,
    every_reader_queries: bool = False,
) -> int:
    """Start ``readers`` readers together on a cold row; return the queries they ran.

    Only SELECTs on the model's table are counted, and each is slowed by ``slow_ms``. With
    ``every_reader_queries``, a query instead waits (up to 30 s) until every reader has
    queried, so none can arrive late and hit a row another reader filled: for a cache that
    does not make readers wait, the count is then exactly ``readers``, however slow the host.
    """
    model = model if model is not None else default_model()
    table = model._meta.db_table
    read = read if read is not None else _cached_read(model)
    if processes:
        connections.close_all()
        ctx: Any = multiprocessing.get_context("fork")
    else:
        ctx = None
    queries = multiprocessing.Value("q", 0)
    start = (ctx or threading).Barrier(readers)
    meet = (ctx or threading).Barrier(readers) if every_reader_queries else None
    kind = ctx.Process if ctx else threading.Thread
    args = (read, table, pk, start, queries, slow_ms, meet)
    workers = [kind(target=_counting_reader, args=args) for _ in range(readers)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return int(queries.value)
