"""Command line of the benchmarks: set up, measure interleaved, print and save the tables."""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import django

from bench.environment import describe, progress
from bench.report import (
    Line,
    Report,
    Section,
    Target,
    render_markdown,
    render_text,
    size_section,
    timing_section,
    timing_target,
)

if TYPE_CHECKING:
    from bench.cases import Context, Sizes
    from bench.consistency import RaceResult, StampedeResult
    from bench.timing import Variant


@dataclass(frozen=True)
class Plan:
    """How much to run: rounds, and per case the calls per variant per round and slices."""

    rounds: int
    single: int
    many: int
    miss: int
    slices: int
    stampedes: int  # (e) stampedes per contender and crowd
    race_writes: int  # (f) writes per race run
    rows: int = 1000
    slow_ms: float = 50  # (e) how long the row's SELECT is held
    race_readers: int = 3
    pause_probability: float = 0.5  # (f) chance of a pause at each step
    pause_ms: float = 3  # (f) longest pause


FULL = Plan(rounds=15, single=2000, many=100, miss=500, slices=20, stampedes=5, race_writes=300)
QUICK = Plan(rounds=5, single=400, many=20, miss=100, slices=10, stampedes=3, race_writes=100)

#: ``--only`` choices: the read path (a)-(d), or consistency under concurrency (e)-(f).
PARTS = ("reads", "consistency")


@dataclass(frozen=True)
class Options:
    plan: Plan
    markdown: Path | None
    profile: int | None
    parts: tuple[str, ...] = PARTS


def arguments(prog: str, description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: ``--quick``, ``--rounds N``, ``--markdown PATH``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--quick", action="store_true", help="a short run (5 small rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, quick 5)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    return parser


def emit(text: str, markdown: str, path: Path | None) -> None:
    """Print the text tables; write the Markdown ones to ``path`` if one was given."""
    sys.stdout.write(text)
    if path is not None:
        path.write_text(markdown)
        progress(f"wrote {path}")


def parse(argv: list[str]) -> Options:
    parser = arguments("bench/run.py", "Benchmarks of django-cachestrat reads.")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="instead: cProfile N cache hits and exit"
    )
    parser.add_argument(
        "--only",
        choices=PARTS,
        help="reads: (a)-(d), the read path; consistency: (e)-(f), stampedes and stale reads",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = dataclasses.replace(plan, rounds=args.rounds)
    parts = PARTS if args.only is None else (args.only,)
    return Options(plan, args.markdown, args.profile, parts)


def _run_line(plan: Plan, parts: tuple[str, ...]) -> str:
    done = []
    if "reads" in parts:
        done.append(
            f"{plan.rounds} rounds; calls per variant per round: (a) {plan.single}, "
            f"(b) {plan.many}, (d) {plan.miss}, each cut into {plan.slices} interleaved slices"
        )
    if "consistency" in parts:
        done.append(
            f"(e) {plan.stampedes} stampedes per reader and crowd, the row's SELECT held "
            f"{plan.slow_ms:g} ms; (f) {plan.race_writes} writes per run, "
            f"{plan.race_readers} readers, a random pause at each step with probability "
            f"{plan.pause_probability:g}, up to {plan.pause_ms:g} ms"
        )
    done.append(f"{plan.rows} seeded rows per model")
    return "; ".join(done)


def environment(plan: Plan, parts: tuple[str, ...] = PARTS) -> list[tuple[str, str]]:
    libs = ("Django", "redis", "hiredis", "django-redis", "msgpack", "psycopg")
    return [*describe(libs), ("Run", _run_line(plan, parts))]


def seed(plan: Plan) -> list[int]:
    """Seed the articles and members; returns the articles' pks."""
    from bench import database

    progress(f"seeding {plan.rows} articles and {plan.rows} members")
    database.seed_members(plan.rows)
    return database.seed(plan.rows)


def prepare(pks: list[int]) -> Context:
    """Fill the cache and the floor keys, and check hits are hits."""
    from django_redis import get_redis_connection

    from bench import cases
    from bench.benchapp.models import Article

    client = get_redis_connection("default")
    cached_plan = Article.cached.plan
    slugs = dict(Article.objects.values_list("pk", "slug"))
    ctx = cases.Context(client, cached_plan, pks, slugs, cases.Floor(client, cached_plan))
    cases.warm(ctx)
    cases.verify(ctx)
    return ctx


@dataclass
class Results:
    """What the parts measured; a part not run leaves its fields empty."""

    groups: dict[str, list[Variant]] = dataclasses.field(default_factory=dict)
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    sizes: dict[str, Sizes] = dataclasses.field(default_factory=dict)
    stampedes: list[StampedeResult] = dataclasses.field(default_factory=list)
    races: list[RaceResult] = dataclasses.field(default_factory=list)


def measure_reads(plan: Plan, ctx: Context, results: Results) -> None:
    from bench import cases
    from bench.benchapp.models import Article, Member
    from bench.timing import run_rounds

    progress("(c) measuring bytes per row: articles, then members")
    results.sizes["article"] = cases.sizes(ctx.client, Article)
    results.sizes["profile"] = cases.sizes(ctx.client, Member)
    results.groups = {
        "a": cases.single_row(ctx, plan.single),
        "b": cases.many_rows(ctx, plan.many),
        "d": cases.cache_miss(ctx, plan.miss),
    }
    for name, variants in results.groups.items():
        progress(f"({name}) timing {len(variants)} variants x {plan.rounds} rounds")
        results.samples.update(run_rounds(variants, plan.rounds, plan.slices))


def measure_consistency(plan: Plan, pks: list[int], results: Results) -> None:
    from bench import consistency

    progress(f"(e) {plan.stampedes} stampedes per reader and crowd")
    results.stampedes = consistency.stampedes(pks[0], plan.stampedes, plan.slow_ms)
    progress(f"(f) race runs of {plan.race_writes} writes")
    results.races = consistency.races(
        pks[1:],
        plan.race_writes,
        plan.race_readers,
        plan.pause_probability,
        plan.pause_ms,
    )


SIZE_LABELS = {
    "ours": "ours: cachestrat row payload (header + values)",
    "plain": "floor: msgpack list of the values only",
    "pickle": "pickle.dumps(instance)",
}

SHAPES = {
    "article": "article (13 columns, ~500-character body)",
    "profile": "profile (Member: 11 short columns shaped like auth.User, no password hash)",
}


def read_targets(results: Results) -> list[Target]:
    samples = results.samples
    targets = [
        timing_target("(a) hit / floor", samples, "hit", "floor", ("≤", 1.3)),
        timing_target("(a) ORM get / hit", samples, "orm", "hit", ("≥", 5)),
        timing_target("(a) statistics / hit", samples, "stats", "hit", ("≤", 0.05)),
        timing_target("(b) get_many / floor", samples, "many", "many_floor", ("≤", 1.3)),
        miss_target(samples),
        timing_target(
            "(d) miss / naive miss with 1 more round trip",
            samples,
            "miss",
            "naive_trip",
            ("≤", 1.0),
        ),
    ]
    for shape, sizes in results.sizes.items():
        usage = {name: statistics.fmean(values) for name, values in sizes.usage.items()}
        targets += [
            Target(f"(c) bytes ours / floor — {shape}", usage["ours"] / usage["plain"], ("≤", 1.2)),
            Target(
                f"(c) bytes ours / pickle — {shape}", usage["ours"] / usage["pickle"], ("<", 0.5)
            ),
        ]
    return [
        *targets,
        timing_target(
            "(a) ORM get / floor (ceiling for any Redis hit here)", samples, "orm", "floor"
        ),
        timing_target("(a) slug hit / pk hit", samples, "slug", "hit"),
        timing_target("(b) 100 single gets / get_many", samples, "singles", "many"),
        timing_target("(b) ORM pk__in / get_many", samples, "many_orm", "many"),
        timing_target("(d) miss / ORM get", samples, "miss", "miss_orm"),
        timing_target("(d) naive miss / ORM get", samples, "naive_miss", "miss_orm"),
    ]


def miss_target(samples: dict[str, list[float]]) -> Target:
    """(d) ours against a naive miss plus one round trip, both timed in the same rounds."""
    budget = [n + p for n, p in zip(samples["naive_miss"], samples["ping"], strict=True)]
    return timing_target(
        "(d) miss / (naive miss + PING timed alone)",
        {**samples, "budget": budget},
        "miss",
        "budget",
        ("≤", 1.0),
    )


def consistency_targets(results: Results) -> list[Target]:
    from bench.consistency import median

    targets = [
        Target(
            f"(e) ours: database reads per stampede, {result.crowd}",
            median(result.queries),
            ("≤", 1),
            digits=0,
        )
        for result in results.stampedes
        if result.contender.key == "ours"
    ]
    ours = [race for race in results.races if race.name == "django-cachestrat"]
    if ours:
        stale = sum(race.stale for race in ours)
        targets.append(Target("(f) ours: stale reads, all runs", stale, ("=", 0), digits=0))
    return targets


def stampede_section(results: list[StampedeResult]) -> Section:
    from bench.consistency import median

    header = ("Reader", "crowd", "queries per stampede (median)", "min-max", "runs")
    lines = [
        Line(
            (
                r.contender.label,
                r.crowd,
                f"{median(r.queries):g}",
                f"{min(r.queries)}-{max(r.queries)}",
                str(len(r.queries)),
            )
        )
        for r in results
    ]
    return Section("(e) Database reads per stampede on one hot row", header, lines)


def race_section(results: list[RaceResult]) -> Section:
    header = ("Cache", "workers", "writes", "reads", "stale reads", "stale fraction")
    lines = [
        Line(
            (
                r.name,
                r.workers,
                f"{r.writes:,}",
                f"{r.reads:,}",
                f"{r.stale:,}",
                f"{r.fraction:.1%}",
            )
        )
        for r in results
    ]
    return Section("(f) Stale reads under random interleavings", header, lines)


def build_report(plan: Plan, parts: tuple[str, ...], results: Results) -> Report:
    sections: list[Section] = []
    targets: list[Target] = []
    if "reads" in parts:
        groups, samples = results.groups, results.samples
        sections += [
            timing_section("(a) One row by pk — µs per read", groups["a"], samples),
            timing_section("(b) 100 rows by pk — µs per 100-row read", groups["b"], samples),
        ]
        for shape, sizes in results.sizes.items():
            sections += [
                size_section(
                    f"(c) Bytes per cached row, {SHAPES[shape]} — Redis MEMORY USAGE "
                    "(key + value + overhead)",
                    SIZE_LABELS,
                    sizes.usage,
                ),
                size_section(
                    f"(c) Value length only, {SHAPES[shape]} — STRLEN", SIZE_LABELS, sizes.length
                ),
            ]
        sections.append(timing_section("(d) Cache miss by pk — µs per read", groups["d"], samples))
        targets += read_targets(results)
    if "consistency" in parts:
        sections += [stampede_section(results.stampedes), race_section(results.races)]
        targets += consistency_targets(results)
    return Report(environment(plan, parts), sections, targets)


def main(argv: list[str]) -> int:
    options = parse(argv)
    django.setup()
    from bench import database
    from bench.profiling import profile_hits

    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    results = Results()
    try:
        pks = seed(options.plan)
        if options.profile is not None:
            sys.stdout.write(profile_hits(prepare(pks), max(1, options.profile)))
            return 0
        if "reads" in options.parts:
            measure_reads(options.plan, prepare(pks), results)
        if "consistency" in options.parts:
            measure_consistency(options.plan, pks, results)
        report = build_report(options.plan, options.parts, results)
    finally:
        database.clean_redis()
    emit(render_text(report), render_markdown(report), options.markdown)
    return 0
