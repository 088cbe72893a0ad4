"""What the replica lag guard costs, on a real streaming replica: ``python -m bench.replicas``.

Starts a PostgreSQL primary and a replica (tests/pg_replica.py; root and PostgreSQL 15
binaries needed), routes reads to the replica and writes to the primary, and times, side by
side in rotating order, each path with the guard and with it switched off in the model's plan
(the same keys; only the markers are neither set nor read). Prints medians per call in µs.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable

ROUNDS, CALLS = 15, 200


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    import django

    django.setup()
    from tests import pg_replica

    if not pg_replica.is_available():
        print("needs root and the PostgreSQL 15 binaries", file=sys.stderr)
        return 1
    with pg_replica.primary_and_replica("cs_lag_bench") as servers:
        _bench(*servers)
    return 0


def _bench(primary: object, replica: object) -> None:
    from django.db import connections
    from django.db.models import F
    from django.test import override_settings
    from django_redis import get_redis_connection

    from django_cachestrat.plan import plan_for
    from tests import pg_replica, routers
    from tests.testapp.models import Team

    for alias, server in (("bench_primary", primary), ("bench_replica", replica)):
        config = {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "cs_lag_bench",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": str(server.port),  # type: ignore[attr-defined]
        }
        both = {"default": connections.settings["default"], alias: config}
        connections.settings[alias] = connections.configure_settings(both)[alias]
    with connections["bench_primary"].schema_editor() as editor:
        editor.create_model(Team)
    pks = [
        t.pk
        for t in Team.objects.using("bench_primary").bulk_create(
            Team(name=f"t{i}") for i in range(CALLS)
        )
    ]
    pg_replica.wait_replayed("bench_primary", "bench_replica")
    redis = get_redis_connection("default")
    settings = {"KEY_PREFIX": "csbench", "REPLICAS": {"bench_replica": "bench_primary"}}
    with (
        override_settings(CACHESTRAT=settings),
        routers.in_every_thread("bench_replica", "bench_primary"),
    ):
        plan = plan_for(Team)
        space = plan.space("bench_replica")
        replicas, primaries = plan.replicas, plan.primaries

        def guard(on: bool) -> None:
            plan.replicas = replicas if on else {}
            plan.primaries = primaries if on else frozenset()

        def hit(pk: int) -> float:
            start = time.perf_counter()
            Team.cached.get(pk=pk)
            return time.perf_counter() - start

        def miss(pk: int) -> float:
            redis.delete(space.row(pk))
            start = time.perf_counter()
            Team.cached.get(pk=pk)
            return time.perf_counter() - start

        def write(pk: int) -> float:
            start = time.perf_counter()
            Team.objects.filter(pk=pk).update(name=F("name"))
            return time.perf_counter() - start

        for pk in pks:
            Team.cached.get(pk=pk)
        rows = []
        for name, op in (("hit", hit), ("miss", miss), ("write (autocommit)", write)):
            times = _interleaved(op, pks, guard)
            rows.append((name, times[True], times[False]))
        for key in redis.scan_iter("csbench:*"):
            redis.delete(key)
    print(f"{'path':<20} {'guard on µs':>12} {'guard off µs':>13} {'added µs':>9}")
    for name, on, off in rows:
        print(f"{name:<20} {on:>12.0f} {off:>13.0f} {on - off:>9.0f}")
    with connections["bench_primary"].schema_editor() as editor:
        editor.delete_model(Team)
    connections.close_all()


def _interleaved(
    op: Callable[[int], float], pks: list[int], guard: Callable[[bool], None]
) -> dict[bool, float]:
    """Median µs per call with the guard on and off, in slices of rotating order."""
    samples: dict[bool, list[float]] = {True: [], False: []}
    for round_ in range(ROUNDS):
        for on in (True, False) if round_ % 2 else (False, True):
            guard(on)
            samples[on].extend(op(pk) * 1e6 for pk in pks)
    guard(True)
    return {on: statistics.median(values) for on, values in samples.items()}


if __name__ == "__main__":
    sys.exit(main())
