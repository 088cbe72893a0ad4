"""A stampede: many readers miss one hot row at once; the database counts the queries."""

from __future__ import annotations

import multiprocessing
import threading
import time
from typing import Any

from django.db import connection, connections

from tests.testapp.models import Profile

TABLE = Profile._meta.db_table


def _counting_reader(pk: int, start: Any, queries: Any, slow_ms: float) -> None:
    def counter(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        if sql.startswith("SELECT") and f'FROM "{TABLE}"' in sql:
            with queries.get_lock():
                queries.value += 1
            time.sleep(slow_ms / 1000)  # a slow query widens the window every reader hits
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(counter):
            start.wait(30)
            assert Profile.cached.get(pk=pk).pk == pk
    finally:
        connections.close_all()


def stampede(pk: int, readers: int, processes: bool, slow_ms: float = 50) -> int:
    """Start ``readers`` readers together on a cold row; return the queries they ran."""
    if processes:
        connections.close_all()
        ctx: Any = multiprocessing.get_context("fork")
    else:
        ctx = None
    queries = multiprocessing.Value("q", 0)
    start = (ctx or threading).Barrier(readers)
    kind = ctx.Process if ctx else threading.Thread
    workers = [
        kind(target=_counting_reader, args=(pk, start, queries, slow_ms)) for _ in range(readers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    return int(queries.value)
