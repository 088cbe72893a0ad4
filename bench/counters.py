"""Write-behind counters, measured: ``python -m bench.counters [--quick] [--markdown PATH]``.

(a) Increments per second: ``Post.cached.incr(pk, "likes")`` against the least a Redis
write-behind buffer can do (one pipelined ``HINCRBY`` + ``SADD`` round trip from redis-py)
and against ``Post.objects.filter(pk=pk).update(likes=F("likes") + 1)`` on PostgreSQL, with
one client and with four concurrent clients. The clients are forked processes, each with its
own Redis and database connections, so four clients are not serialised by one interpreter's
GIL (web workers are processes too). Every variant runs in every round, cut into slices run
in rotating order, and medians of the per-round figures are compared.

(b) Flushing: 100,000 increments spread over 10,000 rows are put in with ``cached.incr``
(real pending increments in the app's own stripes), then ``drain_all()`` is timed, its SQL
statements are counted, and the database totals are checked against the increments.

``run()`` returns the sections and targets (``bench/report.py``) for another runner to print.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import itertools
import multiprocessing
import os
import platform
import random
import re
import statistics
import sys
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.environment import code_version, cpu, progress, versions
from bench.report import (
    Line,
    Report,
    Section,
    Target,
    render_markdown,
    render_text,
    timing_target,
    verdict_line,
)
from bench.timing import rotated, summarize

#: Every Redis key this module writes besides the model's namespace (``cs:benchapp.post:*``).
OWN_PREFIX = "bench:counters:"
FLOOR_STRIPES = 8
FIELDS = ("likes", "views")
#: The one-minute load average above which the measurement waits (``wait_for_quiet``).
QUIET_LOAD = 1.5


@dataclass(frozen=True)
class Plan:
    """How much to run. Op counts are per client per round, cut into ``slices`` slices."""

    rounds: int
    slices: int
    fast_ops: int  # the floor and incr
    slow_ops: int  # the UPDATEs
    flush_runs: int
    rows: int = 10_000  # seeded posts; (a) uses the first ``incr_rows`` of them
    incr_rows: int = 1_000
    increments: int = 100_000  # (b) pending increments per flush
    clients: int = 4


FULL = Plan(rounds=15, slices=10, fast_ops=2000, slow_ops=300, flush_runs=3)
QUICK = Plan(rounds=5, slices=5, fast_ops=500, slow_ops=75, flush_runs=1)


@dataclass(frozen=True)
class Case:
    """One variant of (a): the operation ``op`` run by ``clients`` client processes."""

    key: str
    label: str
    op: str
    clients: int
    slow: bool = False


FLOOR_LABEL = "floor: pipelined HINCRBY + SADD, 1 round trip (redis-py)"
INCR_LABEL = 'Post.cached.incr(pk, "likes")'
ORM_LABEL = 'Post.objects.filter(pk=).update(likes=F("likes") + 1) — PostgreSQL'
SCRIPT_LABEL = "incr.lua alone: the same EVALSHA, keys precomputed, no app code around it"
SQL_LABEL = "the same UPDATE through psycopg (no ORM, no cache invalidation)"

CASES = (
    Case("floor1", FLOOR_LABEL, "floor", 1),
    Case("incr1", INCR_LABEL, "incr", 1),
    Case("script1", SCRIPT_LABEL, "script", 1),
    Case("orm1", ORM_LABEL, "orm", 1, slow=True),
    Case("sql1", SQL_LABEL, "sql", 1, slow=True),
    Case("floor4", FLOOR_LABEL, "floor", 4),
    Case("incr4", INCR_LABEL, "incr", 4),
    Case("orm4", ORM_LABEL, "orm", 4, slow=True),
)


# --- load -------------------------------------------------------------------------------


def wait_for_quiet(limit: float = QUIET_LOAD, pause: int = 60, longest: int = 600) -> str:
    """Wait (``pause`` s at a time, ``longest`` s at most) while the load average is above
    ``limit``, so other work on the host does not skew the figures; describes what it saw."""
    waited = 0
    load = os.getloadavg()[0]
    while load > limit and waited < longest:
        progress(f"load average {load:.2f} > {limit:g}: waiting {pause} s")
        time.sleep(pause)
        waited += pause
        load = os.getloadavg()[0]
    state = "at or below" if load <= limit else "STILL ABOVE"
    return f"{load:.2f} (1-minute average) at the start, {state} {limit:g} after waiting {waited} s"


# --- set-up and clean-up ----------------------------------------------------------------


def seed(rows: int) -> list[int]:
    from bench.benchapp.models import Post

    Post.objects.bulk_create([Post() for _ in range(rows)], batch_size=1000)
    return list(Post.objects.order_by("pk").values_list("pk", flat=True))


def clean() -> int:
    """Delete this module's Redis keys and the post model's (SCAN, never KEYS), and the
    write-behind batch records of posts; returns how many keys were deleted."""
    from bench import database
    from bench.benchapp.models import Post
    from django_cachestrat.models import CounterBatch

    deleted = database.clean_redis((f"{OWN_PREFIX}*", Post.cached.plan.keys.pattern))
    CounterBatch.objects.filter(model=Post.cached.plan.keys.label).delete()
    return deleted


# --- (a) increments per second ----------------------------------------------------------

UPDATE_SQL = 'UPDATE "benchapp_post" SET "likes" = "likes" + 1 WHERE "id" = %s'


def client_ops() -> dict[str, Callable[[int], object]]:
    """The operations of (a), built in each client process after the fork."""
    from django.db import connection
    from django.db.models import F
    from django_redis import get_redis_connection

    from bench.benchapp.models import Post
    from django_cachestrat.client import scripts
    from django_cachestrat.counters import SEQUENCE_KEEP_MS

    client = get_redis_connection("default")
    incr = Post.cached.incr
    rows = Post.objects
    plan = Post.cached.plan
    sequence_id, numbers = uuid.uuid4().hex[:16], itertools.count(1)
    script_keys: dict[int, tuple[str, str, str]] = {}

    def floor(pk: int) -> None:
        stripe = pk % FLOOR_STRIPES
        pipe = client.pipeline(transaction=False)
        pipe.hincrby(f"{OWN_PREFIX}{stripe}:pending", f"likes:{pk}", 1)
        pipe.sadd(f"{OWN_PREFIX}{stripe}:dirty", pk)
        pipe.execute()

    def cached_incr(pk: int) -> None:
        incr(pk, "likes")

    def script(pk: int) -> None:
        # What incr sends, with its keys computed once per row (on the warm-up round).
        keys = script_keys.get(pk)
        if keys is None:
            stripe = plan.keys.stripe(plan.keys.stripe_of(pk, plan.stripes))
            keys = script_keys[pk] = (stripe.pending, stripe.throttle, stripe.sequence(sequence_id))
        args = (f"likes:{pk}", 1, 10**9, 1000, next(numbers), SEQUENCE_KEEP_MS)
        scripts.incr(client, keys, args)

    def orm(pk: int) -> None:
        rows.filter(pk=pk).update(likes=F("likes") + 1)

    def sql(pk: int) -> None:
        connection.ensure_connection()  # autocommit, as Django leaves it
        with connection.connection.cursor() as cursor:
            cursor.execute(UPDATE_SQL, (pk,))

    return {"floor": floor, "incr": cached_incr, "script": script, "orm": orm, "sql": sql}


def _client(pipe: Connection, pks: list[int]) -> None:
    """A client process: run ``count`` calls of an op when told, report start, end, CPU."""
    ops = client_ops()
    position = 0
    while (message := pipe.recv()) is not None:
        name, count = message
        args = [pks[(position + i) % len(pks)] for i in range(count)]
        position += count
        op = ops[name]
        gc.collect()
        gc.disable()  # as timeit does
        try:
            cpu = time.process_time_ns()
            start = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes
            for arg in args:
                op(arg)
            end = time.perf_counter_ns()
            cpu = time.process_time_ns() - cpu
        except Exception:
            pipe.send(("error", traceback.format_exc()))
            continue
        finally:
            gc.enable()
        pipe.send((start, end, cpu))
    from django.db import connections

    connections.close_all()


class Clients:
    """``count`` forked client processes, each working on its own share of the rows (so
    the UPDATEs never wait for each other's row locks)."""

    def __init__(self, count: int, pks: list[int]) -> None:
        from django.db import connections

        connections.close_all()  # a child must open its own connection, not share ours
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(count):
            here, there = context.Pipe()
            process = context.Process(target=_client, args=(there, pks[index::count]))
            process.daemon = True
            process.start()
            there.close()
            self.pipes.append(here)
            self.processes.append(process)

    def run(self, op: str, count: int, clients: int) -> tuple[int, int]:
        """``count`` calls of ``op`` in each of the first ``clients`` processes at once:
        nanoseconds from the first start to the last end, and CPU nanoseconds summed."""
        pipes = self.pipes[:clients]
        for pipe in pipes:
            pipe.send((op, count))
        replies = [pipe.recv() for pipe in pipes]
        for reply in replies:
            if reply[0] == "error":
                raise RuntimeError(f"a client failed running {op}:\n{reply[1]}")
        start = min(reply[0] for reply in replies)
        end = max(reply[1] for reply in replies)
        return end - start, sum(reply[2] for reply in replies)

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()


@dataclass
class Rates:
    """(a): per round, µs per op (aggregate over the clients) and client CPU µs per op."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def measure_increments(plan: Plan, pks: list[int]) -> Rates:
    """One untimed warm-up round, then ``plan.rounds`` rounds of every case, interleaved."""
    rates = Rates({c.key: [] for c in CASES}, {c.key: [] for c in CASES})
    clients = Clients(plan.clients, pks)
    try:
        for index in range(plan.rounds + 1):
            order = rotated(CASES, index)
            wall = dict.fromkeys(rates.wall, 0)
            cpu = dict.fromkeys(rates.wall, 0)
            ops = dict.fromkeys(rates.wall, 0)
            for _ in range(plan.slices):
                for case in order:
                    count = (plan.slow_ops if case.slow else plan.fast_ops) // plan.slices
                    span, used = clients.run(case.op, count, case.clients)
                    wall[case.key] += span
                    cpu[case.key] += used
                    ops[case.key] += count * case.clients
            if index == 0:
                continue  # warm-up
            for key in rates.wall:
                rates.wall[key].append(wall[key] / ops[key] / 1000)
                rates.cpu[key].append(cpu[key] / ops[key] / 1000)
            progress(f"(a) round {index}/{plan.rounds}")
    finally:
        clients.close()
    return rates


RATE_HEADER = (
    "Variant",
    "µs/op (median)",
    "p25-p75",
    "ops/s",
    "client CPU µs/op",
    "x first row",
)


def rate_section(title: str, cases: Sequence[Case], rates: Rates) -> Section:
    base = statistics.median(rates.wall[cases[0].key])
    lines = []
    for case in cases:
        stat = summarize(rates.wall[case.key])
        lines.append(
            Line(
                (
                    case.label,
                    f"{stat.median:,.1f}",
                    f"{stat.p25:,.1f}-{stat.p75:,.1f}",
                    f"{1e6 / stat.median:,.0f}",
                    f"{statistics.median(rates.cpu[case.key]):,.1f}",
                    f"{stat.median / base:.2f}",
                )
            )
        )
    return Section(title, RATE_HEADER, lines)


def rate_targets(rates: Rates) -> list[Target]:
    samples = rates.wall
    return [
        timing_target(
            "(a) incr / floor, 1 client (µs per op)", samples, "incr1", "floor1", ("≤", 1.3)
        ),
        timing_target(
            "(a) incr / floor, 4 clients (aggregate µs per op)",
            samples,
            "incr4",
            "floor4",
            ("≤", 1.3),
        ),
        timing_target(
            "(a) UPDATE / incr, 1 client (= incr rate ÷ UPDATE rate)",
            samples,
            "orm1",
            "incr1",
            ("≥", 10),
        ),
        timing_target("(a) UPDATE / floor, 1 client", samples, "orm1", "floor1"),
        timing_target("(a) incr / incr.lua alone, 1 client", samples, "incr1", "script1"),
        timing_target("(a) incr.lua alone / floor, 1 client", samples, "script1", "floor1"),
        timing_target("(a) UPDATE / psycopg UPDATE, 1 client", samples, "orm1", "sql1"),
        timing_target("(a) UPDATE / incr, 4 clients", samples, "orm4", "incr4"),
        timing_target("(a) incr rate, 4 clients ÷ 1 client", samples, "incr1", "incr4"),
    ]


def rate_reasons(rates: Rates, targets: list[Target]) -> list[str]:
    """For each (a) target not met: what the per-op time is made of, from the figures."""
    wall = {k: statistics.median(v) for k, v in rates.wall.items()}
    cpu = {k: statistics.median(v) for k, v in rates.cpu.items()}
    reasons = []
    for target in targets:
        if target.met is not False:
            continue
        if target.name.startswith("(a) incr / floor, 1"):
            gap = wall["incr1"] - wall["floor1"]
            redis_part = wall["script1"] - wall["floor1"]
            app_part = wall["incr1"] - wall["script1"]
            reasons.append(
                f"  why: incr takes {gap:.1f} µs per op more than the floor "
                f"({wall['incr1']:.1f} vs {wall['floor1']:.1f}): {redis_part:.1f} µs is "
                f"incr.lua itself (EVALSHA alone: {wall['script1']:.1f} µs; it runs GET, SET, "
                f"HINCRBY and HLEN where the floor runs HINCRBY and SADD) and {app_part:.1f} µs "
                "the app's Python around it (argument checks, pk cleaning, router and atomic "
                "block checks, stripe keys, sequence number, fail-open wrapper); client CPU "
                f"per op: incr {cpu['incr1']:.1f}, incr.lua alone {cpu['script1']:.1f}, "
                f"floor {cpu['floor1']:.1f} µs"
            )
        elif target.name.startswith("(a) incr / floor, 4"):
            gap = wall["incr4"] - wall["floor4"]
            reasons.append(
                f"  why: incr takes {gap:.1f} µs per op more than the floor in aggregate "
                f"({wall['incr4']:.1f} vs {wall['floor4']:.1f}); with {os.cpu_count()} cores "
                "shared by the clients, Redis and PostgreSQL, CPU is the limit: client CPU "
                f"per op is {cpu['incr4']:.1f} µs for incr against {cpu['floor4']:.1f} µs "
                "for the floor"
            )
        elif target.name.startswith("(a) UPDATE / incr, 1 client"):
            ceiling = wall["orm1"] / wall["floor1"]
            tail = (
                "; the floor itself is under 10x, so no one-round-trip Redis increment "
                "reaches 10x on this host"
                if ceiling < 10
                else "; the shortfall is incr's overhead over the floor (above)"
            )
            reasons.append(
                f"  why: an UPDATE costs {wall['orm1']:.0f} µs here (the UPDATE through "
                f"psycopg alone {wall['sql1']:.0f} µs; the rest is the ORM and the app's "
                f"cache invalidation), incr {wall['incr1']:.1f} µs and the floor "
                f"{wall['floor1']:.1f} µs, which is {ceiling:.1f}x the UPDATE rate{tail}"
            )
    return reasons


# --- (b) flush --------------------------------------------------------------------------


class StatementLog:
    """An execute wrapper: statements by kind, UPDATEs by table, and time spent in SQL."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.seconds = 0.0

    def __call__(
        self,
        execute: Callable[..., Any],
        sql: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        kind = sql.lstrip().split(None, 1)[0].upper()
        self.kinds[kind] += 1
        if kind == "UPDATE":
            match = re.match(r'\s*UPDATE\s+"?([\w$]+)', sql, re.IGNORECASE)
            self.updates[match.group(1) if match else "?"] += 1
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start

    @property
    def total(self) -> int:
        return sum(self.kinds.values())


@dataclass(frozen=True)
class FlushRun:
    load_seconds: float
    seconds: float
    log: StatementLog
    batches: int
    flushed: int  # increments the batches report
    counters: int  # distinct (row, field) counters pending before the flush
    mismatches: int  # (row, field) counters whose database value is not the expected one
    difference: int  # database total minus increments
    leftover: int  # write-behind keys still holding increments after the flush


def _pending(plan: Any, client: Any) -> tuple[int, int]:
    """Counters and increments pending in the model's stripes (HLEN and HVALS)."""
    pipe = client.pipeline(transaction=False)
    for index in range(plan.stripes):
        pipe.hvals(plan.keys.stripe(index).pending)
    values = pipe.execute()
    return sum(len(v) for v in values), sum(int(x) for v in values for x in v)


def flush_run(plan: Plan, pks: list[int], seed_value: int) -> FlushRun:
    """Put ``plan.increments`` increments on random (row, field) counters with
    ``cached.incr``, flush them with ``drain_all()``, check the database, reset it."""
    from django.db import connection
    from django_redis import get_redis_connection

    from bench.benchapp.models import Post
    from django_cachestrat import drain

    client = get_redis_connection("default")
    model_plan = Post.cached.plan
    rng = random.Random(seed_value)
    draws = [(rng.choice(pks), rng.choice(FIELDS)) for _ in range(plan.increments)]
    expected = Counter(draws)
    # Nothing is pending: this flush only runs, untimed, the once-an-hour clean-up of old
    # batch records that the first flush of a process does.
    drain.drain_all()
    incr = Post.cached.incr
    start = time.perf_counter()
    for pk, name in draws:
        incr(pk, name)
    load_seconds = time.perf_counter() - start
    counters, increments = _pending(model_plan, client)
    if (counters, increments) != (len(expected), plan.increments):
        raise RuntimeError(
            f"expected {len(expected)} counters holding {plan.increments} increments pending, "
            f"found {counters} holding {increments}"
        )
    log = StatementLog()
    with connection.execute_wrapper(log):
        start = time.perf_counter()
        results = drain.drain_all()
        seconds = time.perf_counter() - start
    values = list(Post.objects.values_list("pk", *FIELDS))
    mismatches = sum(
        (likes, views) != (expected[pk, "likes"], expected[pk, "views"])
        for pk, likes, views in values
    )
    total = sum(likes + views for _, likes, views in values)
    leftover = sum(_pending(model_plan, client)) + client.exists(
        *(key for i in range(model_plan.stripes) for key in model_plan.keys.stripe(i)[1:3])
    )
    Post.objects.update(likes=0, views=0)
    return FlushRun(
        load_seconds,
        seconds,
        log,
        len(results),
        sum(r.increments for r in results),
        counters,
        mismatches,
        total - plan.increments,
        leftover,
    )


FLUSH_HEADER = (
    "Run",
    "load: cached.incr calls/s",
    "pending counters",
    "batches",
    "drain_all() s",
    "of it in SQL s",
    "statements",
    "UPDATEs (counters + batch records)",
    "statements by kind",
    "DB total - increments",
)


def flush_section(plan: Plan, runs: list[FlushRun]) -> Section:
    from bench.benchapp.models import Post

    table = Post._meta.db_table
    lines = []
    for number, run in enumerate(runs, 1):
        updates = run.log.updates
        others = sum(updates.values()) - updates[table]
        kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(run.log.kinds.items()))
        lines.append(
            Line(
                (
                    str(number),
                    f"{plan.increments / run.load_seconds:,.0f}",
                    f"{run.counters:,}",
                    str(run.batches),
                    f"{run.seconds:.3f}",
                    f"{run.log.seconds:.3f}",
                    str(run.log.total),
                    f"{sum(updates.values())} ({updates[table]} + {others})",
                    kinds,
                    f"{run.difference:+d}",
                )
            )
        )
    title = (
        f"(b) drain_all() of {plan.increments:,} pending increments over {plan.rows:,} rows "
        "(likes and views)"
    )
    return Section(title, FLUSH_HEADER, lines)


def flush_targets(runs: list[FlushRun]) -> list[Target]:
    seconds = [run.seconds for run in runs]
    return [
        Target(
            "(b) drain_all() seconds (median of runs)",
            statistics.median(seconds),
            ("<", 2),
            summarize(seconds),
        ),
        Target(
            "(b) UPDATE statements per flush (most in a run)",
            max(sum(run.log.updates.values()) for run in runs),
            ("≤", 20),
            digits=0,
        ),
        Target(
            "(b) SQL statements per flush (most in a run)",
            max(run.log.total for run in runs),
            digits=0,
        ),
        Target(
            "(b) counters whose DB value is wrong, all runs",
            sum(run.mismatches for run in runs),
            ("=", 0),
            digits=0,
        ),
        Target(
            "(b) DB total - increments, all runs",
            sum(abs(run.difference) for run in runs),
            ("=", 0),
            digits=0,
        ),
        Target(
            "(b) increments left in Redis after the flush, all runs",
            sum(run.leftover for run in runs),
            ("=", 0),
            digits=0,
        ),
    ]


def flush_reasons(runs: list[FlushRun], targets: list[Target]) -> list[str]:
    reasons = []
    for target in targets:
        if target.met is not False:
            continue
        run = max(runs, key=lambda r: r.seconds)
        if target.name.startswith("(b) drain_all() seconds"):
            reasons.append(
                f"  why: {run.log.seconds:.2f} s of {run.seconds:.2f} s is SQL; the rest is "
                "Redis (claims, invalidation of the updated rows, acknowledgements) and Python"
            )
        elif target.name.startswith("(b) UPDATE statements"):
            reasons.append(f"  why: UPDATEs by table: {dict(run.log.updates)}")
        else:
            reasons.append(
                f"  why: {target.name} = {target.value_text}: increments lost or doubled"
            )
    return reasons


# --- the whole ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """What ``run()`` returns: environment lines, tables, targets, and why targets failed."""

    environment: list[tuple[str, str]]
    sections: list[Section]
    targets: list[Target]
    reasons: list[str]


def run(rounds: int | None = None, *, quick: bool = False, load: str | None = None) -> Measured:
    """Measure (a) and (b); ``django.setup()`` must have run with ``bench.settings``.

    Creates the post table, seeds it, and deletes only its own Redis keys and batch
    records, before and after. ``load`` describes the host's load when it started.
    """
    from django.conf import settings
    from django.test.utils import override_settings

    from bench import database
    from bench.benchapp.models import Post

    plan = QUICK if quick else FULL
    if rounds is not None:
        plan = dataclasses.replace(plan, rounds=max(1, rounds))
    # Full stripes ask Celery for a flush; this benchmark runs no worker and flushes itself.
    write_behind = {**settings.CACHESTRAT.get("WRITE_BEHIND", {}), "BATCH_SIZE": 10**9}
    with override_settings(CACHESTRAT={**settings.CACHESTRAT, "WRITE_BEHIND": write_behind}):
        database.ensure_database()
        database.create_schema((Post,))
        clean()
        try:
            progress(f"seeding {plan.rows:,} posts")
            pks = seed(plan.rows)
            progress(f"(a) {len(CASES)} variants x {plan.rounds} rounds, clients are processes")
            rates = measure_increments(plan, pks[: plan.incr_rows])
            clean()  # drop (a)'s pending increments: (b) starts from nothing pending
            Post.objects.update(likes=0, views=0)
            runs = []
            for number in range(plan.flush_runs):
                progress(f"(b) flush run {number + 1}/{plan.flush_runs}")
                runs.append(flush_run(plan, pks, 20240700 + number))
        finally:
            clean()
    after = os.getloadavg()[0]
    one = [c for c in CASES if c.clients == 1]
    four = [c for c in CASES if c.clients == plan.clients]
    sections = [
        rate_section("(a) Increments, 1 client — µs per increment", one, rates),
        rate_section(
            f"(a) Increments, {plan.clients} concurrent clients (processes) — aggregate µs "
            "per increment",
            four,
            rates,
        ),
        flush_section(plan, runs),
    ]
    a_targets, b_targets = rate_targets(rates), flush_targets(runs)
    reasons = rate_reasons(rates, a_targets) + flush_reasons(runs, b_targets)
    load_line = f"{load or 'not checked'}; {after:.2f} at the end (this run's own clients included)"
    environment = [*_environment(plan), ("Load", load_line)]
    return Measured(environment, sections, a_targets + b_targets, reasons)


def _environment(plan: Plan) -> list[tuple[str, str]]:
    from django.db import connection
    from django_redis import get_redis_connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_server = get_redis_connection("default").info("server")["redis_version"]
    run_line = (
        f"(a) {plan.rounds} rounds; per client per round {plan.fast_ops} floor/incr calls and "
        f"{plan.slow_ops} UPDATEs, each cut into {plan.slices} interleaved slices, on "
        f"{plan.incr_rows:,} rows; (b) {plan.flush_runs} flush run(s) of "
        f"{plan.increments:,} increments over {plan.rows:,} rows"
    )
    return [
        ("CPU", f"{cpu()}, {os.cpu_count()} cores"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Libraries", versions(("Django", "redis", "hiredis", "django-redis", "psycopg"))),
        ("Servers", f"PostgreSQL {postgres}, Redis {redis_server}, both on this host over TCP"),
        ("Code", code_version()),
        ("Run", run_line),
        ("Clients", "forked processes, each with its own Redis and PostgreSQL connections"),
    ]


def render(measured: Measured) -> tuple[str, str]:
    """The text for the terminal (with a verdict and a reason per target) and Markdown."""
    report = Report(measured.environment, measured.sections, measured.targets)
    text = render_text(report)
    if measured.reasons:
        text += "\n".join(measured.reasons) + "\n"
    markdown = render_markdown(report)
    verdicts = [verdict_line(t) for t in measured.targets if t.goal is not None]
    markdown += "\n```\n" + "\n".join(verdicts + measured.reasons) + "\n```\n"
    return text, markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.counters", description="Benchmarks of write-behind counters."
    )
    parser.add_argument("--quick", action="store_true", help="a short run (5 small rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, quick 5)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    load = wait_for_quiet()
    progress(f"load average {load}")
    text, markdown = render(run(args.rounds, quick=args.quick, load=load))
    sys.stdout.write(text)
    if args.markdown is not None:
        args.markdown.write_text(markdown)
        progress(f"wrote {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
