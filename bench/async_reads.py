"""Async hits through ``aget`` against an async floor and against the old thread path.

The async floor is the least work an async hit can do: a ``redis.asyncio`` GET of the
stored payload, its decode and ``from_db`` (for 100 rows an MGET and the same decode of
each). The thread path is what ``aget`` was before: the sync hit run through
``sync_to_async``. One more floor reads the two keys every hit reads (the model's
generation and the row) in one MGET, to show what the protocol itself costs.

    .venv/bin/python bench/run.py --only async [--quick] [--rounds R]

Every variant runs on one event loop, in slices interleaved A B C A B C ..., with the order
rotated each round; the table shows the median over rounds of the mean time per call, and
the median over rounds of each variant's time divided by the floor's in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path[0] = str(Path(__file__).resolve().parent.parent)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")

Op = Callable[[], Awaitable[object]]


async def _round(variants: dict[str, Op], calls: int, slices: int, shift: int) -> dict[str, float]:
    names = list(variants)
    names = names[shift % len(names) :] + names[: shift % len(names)]
    elapsed = dict.fromkeys(names, 0)
    per_slice = max(1, calls // slices)
    for _ in range(slices):
        for name in names:
            op = variants[name]
            start = time.perf_counter_ns()
            for _ in range(per_slice):
                await op()
            elapsed[name] += time.perf_counter_ns() - start
    return {name: elapsed[name] / (per_slice * slices) / 1000 for name in names}


async def measure(
    title: str, variants: dict[str, Op], calls: int, rounds: int, slices: int = 10
) -> dict[str, float]:
    """Print one table (the first variant is the floor); return each variant's median,
    over rounds, of its time per call divided by the floor's in the same round."""
    await _round(variants, calls, slices, 0)  # warm-up, untimed
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for index in range(rounds):
        for name, value in (await _round(variants, calls, slices, index)).items():
            samples[name].append(value)
    floor = next(iter(samples.values()))
    ratios = {
        name: statistics.median(v / f for v, f in zip(values, floor, strict=True))
        for name, values in samples.items()
    }
    print(f"\n| {title} | µs per call | range over rounds | x floor |\n|---|---|---|---|")
    for name, values in samples.items():
        print(
            f"| {name} | {statistics.median(values):,.1f} | "
            f"{min(values):,.1f}-{max(values):,.1f} | {ratios[name]:.2f} |"
        )
    return ratios


async def _bench(pks: list[int], calls: int, rounds: int) -> None:
    from asgiref.sync import sync_to_async
    from django_redis import get_redis_connection

    from bench.benchapp.models import Article
    from bench.cases import Floor
    from django_cachestrat import aclient

    sync_client = get_redis_connection("default")
    floor = Floor(sync_client, Article.cached.plan)
    client: Any = aclient.derive(sync_client)
    pk, hundred = pks[len(pks) // 2], pks[:100]
    floor_keys = [Floor.key(p) for p in hundred]

    async def floor_get() -> object:
        return floor.decode(await client.get(Floor.key(pk)))

    pair = [Article.cached.plan.keys.generation, Floor.key(pk)]

    async def floor_pair() -> object:  # what a hit must read: the generation and the row
        return floor.decode((await client.mget(pair))[1])

    async def floor_many() -> object:
        values = await client.mget(floor_keys)
        return {p: floor.decode(data) for p, data in zip(hundred, values, strict=True) if data}

    thread_get = sync_to_async(Article.cached.get)
    thread_many = sync_to_async(Article.cached.get_many)
    one = await measure(
        "One row",
        {
            "floor: redis.asyncio GET + decode + from_db": floor_get,
            "`await Article.cached.aget(pk=)` hit": lambda: Article.cached.aget(pk=pk),
            "before: `sync_to_async(Article.cached.get)` hit": lambda: thread_get(pk=pk),
            "floor with the generation: MGET of 2 keys + decode + from_db": floor_pair,
        },
        calls,
        rounds,
    )
    many = await measure(
        "100 rows",
        {
            "floor: redis.asyncio MGET 100 + decode + from_db each": floor_many,
            "`await Article.cached.aget_many(100 pks)` hits": (
                lambda: Article.cached.aget_many(hundred)
            ),
            "before: `sync_to_async(Article.cached.get_many)` hits": lambda: thread_many(hundred),
        },
        max(1, calls // 20),
        rounds,
    )
    for name, medians in (("one row", one), ("100 rows", many)):
        new, old = list(medians.values())[1:3]
        print(f"\naget speed-up over the thread path, {name}: {old / new:.2f}x")
    await client.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--calls", type=int)
    options, _ = parser.parse_known_args(argv)
    rounds = options.rounds or (5 if options.quick else 11)
    calls = options.calls or (400 if options.quick else 2000)

    import django

    django.setup()
    from django.core.management import call_command
    from django_redis import get_redis_connection

    from bench import database
    from bench.benchapp.models import Article
    from bench.cases import Floor

    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    call_command("check")
    pks = database.seed(1000)
    Article.cached.get_many(pks)  # every row cached
    client = get_redis_connection("default")
    for pk in [*pks[:100], pks[len(pks) // 2]]:  # the floor reads copies of the payloads
        client.set(Floor.key(pk), client.get(Article.cached.plan.keys.row(pk)))
    try:
        asyncio.run(_bench(pks, calls, rounds))
    finally:
        database.clean_redis()
    return 0


if __name__ == "__main__":
    sys.exit(main())
