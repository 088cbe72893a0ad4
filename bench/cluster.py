"""Hit path on a local Redis Cluster and on one server, each against its floor.

The floors are the least work a hit can do: a GET of the stored payload, its decode and
``from_db`` for one row; an MGET of 100 payloads (on a cluster ``mget_nonatomic``: one MGET
per slot, every node in one pipeline) and the same decode for ``get_many(100)``.

    .venv/bin/python bench/cluster.py [--single-only] [--calls N] [--rounds R]

Starts six redis-server processes in cluster mode (three primaries, three replicas) on
loopback ports, seeds the benchmark's articles (``bench/settings.py``: ``BENCH_DATABASE``,
``BENCH_REDIS_URL``) and prints the median, over interleaved rounds, of the mean time per
call of each variant. ``--single-only`` measures the single server only (it runs against
releases without ``CONNECTION``, to compare the single-server hit path across releases).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")


def measure(variants: dict[str, Callable[[], object]], calls: int, rounds: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        names = list(variants)
        names = names[round_ % len(names) :] + names[: round_ % len(names)]  # rotate the order
        for name in names:
            op = variants[name]
            start = time.perf_counter_ns()
            for _ in range(calls):
                op()
            times[name].append((time.perf_counter_ns() - start) / calls / 1000)
    floor = statistics.median(next(iter(times.values())))
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:,.1f} | {min(values):,.1f}-{max(values):,.1f} | "
            f"{median / floor:.2f} |"
        )


def _floor(client: Any, model: Any, pks: list[int], many: Any = None) -> Any:
    """The read benchmark's floor on this client: each payload copied to a key of its own."""
    from bench.cases import Floor

    floor = Floor(client, model.cached.plan)
    for pk in pks:
        client.set(Floor.key(pk), client.get(model.cached.plan.keys.row(pk)))
    if many is not None:  # a cluster: the keys span slots

        def get_many(keys: list[int]) -> dict[int, Any]:
            values = many([Floor.key(pk) for pk in keys])
            return {pk: floor.decode(data) for pk, data in zip(keys, values, strict=True) if data}

        floor.get_many = get_many  # type: ignore[method-assign]
    return floor


def _increments(client: Any) -> dict[str, Callable[[], object]]:
    """``Post.cached.incr`` against ``incr.lua`` alone (the same EVALSHA, keys computed
    once, no ``WAIT``), on rows 1-100 in turn."""
    import itertools
    import uuid

    from bench.benchapp.models import Post
    from django_cachestrat.counters import SEQUENCE_KEEP_MS
    from django_cachestrat.scripts import scripts

    plan = Post.cached.plan
    sequence_id, numbers, pks = (
        uuid.uuid4().hex[:16],
        itertools.count(1),
        itertools.cycle(range(1, 101)),
    )
    keys = {}
    for pk in range(1, 101):
        stripe = plan.keys.stripe(plan.keys.stripe_of(pk, plan.stripes))
        keys[pk] = (stripe.pending, stripe.throttle, stripe.sequence(sequence_id))

    def script() -> None:
        pk = next(pks)
        args = (f"likes:{pk}", 1, 10**9, 1000, next(numbers), SEQUENCE_KEEP_MS)
        scripts.incr(client, keys[pk], args)

    return {
        "floor: incr.lua alone (EVALSHA)": script,
        'Post.cached.incr(pk, "likes")': lambda: Post.cached.incr(next(pks), "likes"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--single-only", action="store_true")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=9)
    options = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.test.utils import override_settings
    from django_redis import get_redis_connection

    from bench import database
    from bench.benchapp.models import Article

    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    pks = database.seed(1000)
    pk = pks[len(pks) // 2]
    hundred = pks[:100]
    single = get_redis_connection("default")
    Article.cached.get_many(pks)
    floor = _floor(single, Article, pks)
    print("| Single server | µs per call | range over rounds | x floor |\n|---|---|---|---|")
    measure(
        {
            "floor: GET + decode + from_db": lambda: floor.get(pk),
            "Article.cached.get(pk=) hit": lambda: Article.cached.get(pk=pk),
        },
        options.calls,
        options.rounds,
    )
    measure(
        {
            "floor: MGET 100 + decode + from_db each": lambda: floor.get_many(hundred),
            "Article.cached.get_many(100 pks) hits": lambda: Article.cached.get_many(hundred),
        },
        max(1, options.calls // 20),
        options.rounds,
    )
    print("\n| Single server: write-behind | µs per call | range over rounds | x floor |")
    print("|---|---|---|---|")
    measure(_increments(single), options.calls, options.rounds)
    database.clean_redis()
    if options.single_only:
        return 0

    from tests import cluster as servers
    from tests.servers import LocalCluster

    with tempfile.TemporaryDirectory() as directory:
        local = servers.running["cluster"] = LocalCluster(directory)
        try:
            local.start()
            cachestrat = {**settings.CACHESTRAT, "CONNECTION": "tests.cluster.cluster_client"}
            with override_settings(CACHESTRAT=cachestrat):
                client = servers.cluster_client()
                Article.cached.get_many(pks)
                on_cluster = _floor(client, Article, pks, many=client.mget_nonatomic)
                print(
                    "\n| Redis Cluster (3 primaries) | µs per call | range over rounds | "
                    "x floor |\n|---|---|---|---|"
                )
                measure(
                    {
                        "floor: RedisCluster GET + decode + from_db": lambda: on_cluster.get(pk),
                        "Article.cached.get(pk=) hit": lambda: Article.cached.get(pk=pk),
                    },
                    max(1, options.calls // 2),
                    options.rounds,
                )
                measure(
                    {
                        "floor: mget_nonatomic 100 + decode + from_db each": (
                            lambda: on_cluster.get_many(hundred)
                        ),
                        "Article.cached.get_many(100 pks) hits": (
                            lambda: Article.cached.get_many(hundred)
                        ),
                    },
                    max(1, options.calls // 40),
                    options.rounds,
                )
                print(
                    "\n| Redis Cluster: write-behind (WAIT 1 for a replica) | µs per call | "
                    "range over rounds | x floor |\n|---|---|---|---|"
                )
                measure(_increments(client), max(1, options.calls // 2), options.rounds)
        finally:
            local.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
