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

import dataclasses
import itertools
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.cli import arguments, emit
from bench.environment import describe, progress, wait_for_quiet
from bench.report import (
    Line,
    Report,
    Section,
    Target,
    count_target,
    render_markdown,
    render_text,
    time_cells,
    timing_target,
    verdict_line,
)
from bench.timing import Clients, Rates, summarize

if TYPE_CHECKING:
    from bench.database import StatementLog

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


# --- set-up and clean-up ----------------------------------------------------------------


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
    from django_cachestrat.counters import SEQUENCE_KEEP_MS
    from django_cachestrat.scripts import scripts

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


def measure_increments(plan: Plan, pks: list[int]) -> Rates:
    """One untimed warm-up round, then ``plan.rounds`` rounds of every case, interleaved."""
    calls = {c.key: (plan.slow_ops if c.slow else plan.fast_ops) // plan.slices for c in CASES}
    with Clients(plan.clients, pks, client_ops) as clients:
        return clients.rounds(CASES, calls, plan.rounds, plan.slices, label="(a)")


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
        *cells, ratio = time_cells(case.label, stat, base)
        cpu_per_op = statistics.median(rates.cpu[case.key])
        lines.append(Line((*cells, f"{1e6 / stat.median:,.0f}", f"{cpu_per_op:,.1f}", ratio)))
    return Section(title, RATE_HEADER, lines)


#: The figures of (a): name, numerator, denominator, goal.
RATE_TARGETS: tuple[tuple[str, str, str, tuple[str, float] | None], ...] = (
    ("(a) incr / floor, 1 client (µs per op)", "incr1", "floor1", ("≤", 1.3)),
    ("(a) incr / floor, 4 clients (aggregate µs per op)", "incr4", "floor4", ("≤", 1.3)),
    ("(a) UPDATE / incr, 1 client (= incr rate ÷ UPDATE rate)", "orm1", "incr1", ("≥", 10)),
    ("(a) UPDATE / floor, 1 client", "orm1", "floor1", None),
    ("(a) incr / incr.lua alone, 1 client", "incr1", "script1", None),
    ("(a) incr.lua alone / floor, 1 client", "script1", "floor1", None),
    ("(a) UPDATE / psycopg UPDATE, 1 client", "orm1", "sql1", None),
    ("(a) UPDATE / incr, 4 clients", "orm4", "incr4", None),
    ("(a) incr rate, 4 clients ÷ 1 client", "incr1", "incr4", None),
)


def rate_targets(rates: Rates) -> list[Target]:
    return [
        timing_target(name, rates.wall, top, bottom, goal)
        for name, top, bottom, goal in RATE_TARGETS
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
                f"incr.lua itself (EVALSHA alone: {wall['script1']:.1f} µs; it runs SET … GET "
                "and HINCRBY, and HLEN for a new entry, where the floor runs HINCRBY and SADD) "
                f"and {app_part:.1f} µs "
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
    from bench.database import StatementLog
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
    median = statistics.median(seconds)
    return [
        Target("(b) drain_all() seconds (median of runs)", median, ("<", 2), summarize(seconds)),
        count_target(
            "(b) UPDATE statements per flush (most in a run)",
            max(sum(run.log.updates.values()) for run in runs),
            ("≤", 20),
        ),
        count_target(
            "(b) SQL statements per flush (most in a run)", max(run.log.total for run in runs)
        ),
        count_target(
            "(b) counters whose DB value is wrong, all runs",
            sum(run.mismatches for run in runs),
            ("=", 0),
        ),
        count_target(
            "(b) DB total - increments, all runs",
            sum(abs(run.difference) for run in runs),
            ("=", 0),
        ),
        count_target(
            "(b) increments left in Redis after the flush, all runs",
            sum(run.leftover for run in runs),
            ("=", 0),
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
            pks = database.seed_posts(plan.rows)
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
    run_line = (
        f"(a) {plan.rounds} rounds; per client per round {plan.fast_ops} floor/incr calls and "
        f"{plan.slow_ops} UPDATEs, each cut into {plan.slices} interleaved slices, on "
        f"{plan.incr_rows:,} rows; (b) {plan.flush_runs} flush run(s) of "
        f"{plan.increments:,} increments over {plan.rows:,} rows"
    )
    return [
        *describe(("Django", "redis", "hiredis", "django-redis", "psycopg")),
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
    description = "Benchmarks of write-behind counters."
    args = arguments("python -m bench.counters", description).parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    import django

    django.setup()
    load = wait_for_quiet(QUIET_LOAD)
    progress(f"load average {load}")
    emit(*render(run(args.rounds, quick=args.quick, load=load)), args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
