"""Command line of the benchmarks: set up, measure interleaved, print and save the tables."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import django

from bench.report import (
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
    from bench.timing import Variant


@dataclass(frozen=True)
class Plan:
    """How much to run: rounds, and per case the calls per variant per round and slices."""

    rounds: int
    single: int
    many: int
    miss: int
    slices: int
    rows: int = 1000


FULL = Plan(rounds=15, single=2000, many=100, miss=500, slices=20)
QUICK = Plan(rounds=5, single=400, many=20, miss=100, slices=10)


@dataclass(frozen=True)
class Options:
    plan: Plan
    markdown: Path | None
    profile: int | None


def parse(argv: list[str]) -> Options:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description="Benchmarks of django-cachestrat reads."
    )
    parser.add_argument("--quick", action="store_true", help="a short run (5 small rounds)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 15, quick 5)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    parser.add_argument(
        "--profile", type=int, metavar="N", help="instead: cProfile N cache hits and exit"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.rounds is not None:
        if args.rounds < 1:
            parser.error("--rounds must be at least 1")
        plan = dataclasses.replace(plan, rounds=args.rounds)
    return Options(plan, args.markdown, args.profile)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown"
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else "unknown"


def _code_version() -> str:
    """The commit measured, and whether the package had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = _git(root, "rev-parse", "--short", "HEAD")
        dirty = _git(root, "status", "--porcelain", "--", "django_cachestrat")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' with uncommitted changes in django_cachestrat/' if dirty else ''}"


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def environment(plan: Plan) -> list[tuple[str, str]]:
    from django.db import connection
    from django_redis import get_redis_connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    redis_server = get_redis_connection("default").info("server")["redis_version"]
    libs = ("Django", "redis", "hiredis", "django-redis", "msgpack", "psycopg")
    run = (
        f"{plan.rounds} rounds; calls per variant per round: (a) {plan.single}, "
        f"(b) {plan.many}, (d) {plan.miss}, each cut into {plan.slices} interleaved slices; "
        f"{plan.rows} seeded rows"
    )
    return [
        ("CPU", f"{_cpu()}, {os.cpu_count()} cores"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("Libraries", ", ".join(f"{name} {_version(name)}" for name in libs)),
        ("Servers", f"PostgreSQL {postgres}, Redis {redis_server}, both on this host over TCP"),
        ("Code", _code_version()),
        ("Run", run),
    ]


def prepare(plan: Plan) -> Context:
    """Seed the rows, fill the cache and the floor keys, and check hits are hits."""
    from django_redis import get_redis_connection

    from bench import cases, database
    from bench.benchapp.models import Article

    progress(f"seeding {plan.rows} articles")
    pks = database.seed(plan.rows)
    client = get_redis_connection("default")
    cached_plan = Article.cached.plan
    slugs = dict(Article.objects.values_list("pk", "slug"))
    ctx = cases.Context(client, cached_plan, pks, slugs, cases.Floor(client, cached_plan))
    cases.warm(ctx)
    cases.verify(ctx)
    return ctx


def measure(plan: Plan, ctx: Context) -> Report:
    from bench import cases
    from bench.timing import run_rounds

    progress("(c) measuring bytes per row")
    sizes = cases.sizes(ctx)
    groups = {
        "a": cases.single_row(ctx, plan.single),
        "b": cases.many_rows(ctx, plan.many),
        "d": cases.cache_miss(ctx, plan.miss),
    }
    samples: dict[str, list[float]] = {}
    for name, variants in groups.items():
        progress(f"({name}) timing {len(variants)} variants x {plan.rounds} rounds")
        samples.update(run_rounds(variants, plan.rounds, plan.slices))
    return build_report(plan, groups, samples, sizes)


SIZE_LABELS = {
    "ours": "ours: cachestrat row payload (header + values)",
    "plain": "floor: msgpack list of the values only",
    "pickle": "pickle.dumps(instance)",
}


def targets(samples: dict[str, list[float]], sizes: Sizes) -> list[Target]:
    usage = {name: statistics.fmean(values) for name, values in sizes.usage.items()}
    return [
        timing_target("(a) hit / floor", samples, "hit", "floor", ("≤", 1.3)),
        timing_target("(a) ORM get / hit", samples, "orm", "hit", ("≥", 5)),
        timing_target("(b) get_many / floor", samples, "many", "many_floor", ("≤", 1.3)),
        Target("(c) bytes ours / floor", usage["ours"] / usage["plain"], ("≤", 1.2)),
        Target("(c) bytes ours / pickle", usage["ours"] / usage["pickle"], ("<", 0.5)),
        timing_target(
            "(a) ORM get / floor (ceiling for any Redis hit here)", samples, "orm", "floor"
        ),
        timing_target("(a) slug hit / pk hit", samples, "slug", "hit"),
        timing_target("(b) 100 single gets / get_many", samples, "singles", "many"),
        timing_target("(b) ORM pk__in / get_many", samples, "many_orm", "many"),
        timing_target("(d) miss / ORM get", samples, "miss", "miss_orm"),
    ]


def build_report(
    plan: Plan, groups: dict[str, list[Variant]], samples: dict[str, list[float]], sizes: Sizes
) -> Report:
    bytes_title = "(c) Bytes per cached row — Redis MEMORY USAGE (key + value + overhead)"
    sections: list[Section] = [
        timing_section("(a) One row by pk — µs per read", groups["a"], samples),
        timing_section("(b) 100 rows by pk — µs per 100-row read", groups["b"], samples),
        size_section(bytes_title, SIZE_LABELS, sizes.usage),
        size_section("(c) Value length only — STRLEN", SIZE_LABELS, sizes.length),
        timing_section("(d) Cache miss by pk — µs per read", groups["d"], samples),
    ]
    return Report(environment(plan), sections, targets(samples, sizes))


def main(argv: list[str]) -> int:
    options = parse(argv)
    django.setup()
    from bench import database
    from bench.profiling import profile_hits

    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    try:
        ctx = prepare(options.plan)
        if options.profile is not None:
            sys.stdout.write(profile_hits(ctx, max(1, options.profile)))
            return 0
        report = measure(options.plan, ctx)
    finally:
        database.clean_redis()
    sys.stdout.write(render_text(report))
    if options.markdown is not None:
        options.markdown.write_text(render_markdown(report))
        progress(f"wrote {options.markdown}")
    return 0
