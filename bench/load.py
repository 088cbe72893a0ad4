"""Load benchmark: ``python bench/load.py [--quick] [--markdown PATH]``.

The example project's profile page, served by gunicorn from PostgreSQL and loaded by wrk,
without a cache, with our cache and with django-cacheops; then again with database latency
added. See docs/benchmarks-load.md.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    # The repository root replaces this script's folder on the path, so ``bench`` is a package.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from bench import settings as bench_settings
from bench.load_report import Measured, environment, problems, report
from bench.load_report import render as render_report
from bench.load_server import Served, check_pages, committed, gunicorn, round_trip_ms
from bench.load_setup import (
    Database,
    delete_own_keys,
    ensure_wrk,
    migrate,
    recreate,
    seed,
    usernames,
)
from bench.load_wrk import mix, run, write_script

VARIANTS = ("none", "cachestrat", "cacheops")
CACHED = ("cachestrat", "cacheops")
PROFILES = 1000
#: wrk's unmeasured run on each fresh server before the measured one.
WARM_SECONDS = 1.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float
    connections: int
    delay_ms: float


FULL = Plan(rounds=4, seconds=6, connections=16, delay_ms=1.0)
QUICK = Plan(rounds=1, seconds=3, connections=16, delay_ms=1.0)


def parse(argv: list[str]) -> tuple[Plan, Path | None]:
    parser = argparse.ArgumentParser(prog="bench/load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one round of 3 s runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 4, quick 1)")
    parser.add_argument("--seconds", type=float, help="length of one measured wrk run (default 6)")
    parser.add_argument("--connections", type=int, help="wrk connections (default 16)")
    parser.add_argument("--delay-ms", type=float, help="added database latency (default 1)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    plan = Plan(
        rounds=args.rounds or base.rounds,
        seconds=args.seconds or base.seconds,
        connections=args.connections or base.connections,
        delay_ms=base.delay_ms if args.delay_ms is None else args.delay_ms,
    )
    if plan.rounds < 1 or plan.seconds <= 0 or plan.connections < 1 or plan.delay_ms <= 0:
        parser.error("--rounds, --seconds, --connections and --delay-ms must be positive")
    return plan, args.markdown


@dataclass(frozen=True)
class Bench:
    plan: Plan
    wrk: str
    db: Database
    redis_url: str
    logdir: Path
    script: Path
    names: list[str]

    def served(self, variant: str, delay_ms: float) -> Served:
        return Served(variant, delay_ms, self.db, self.redis_url, self.logdir)

    @property
    def probe(self) -> str:
        return f"/u/{self.names[0]}/"

    def measure(self, variant: str, delay_ms: float) -> Measured:
        """A wrk run against a fresh gunicorn, and the queries the database ran meanwhile."""
        before = committed(self.db)
        with gunicorn(self.served(variant, delay_ms), self.probe) as port:
            # Unmeasured first: the workers' first requests (templates, connections).
            warm = run(self.wrk, port, self.script, WARM_SECONDS, self.plan.connections)
            result = run(self.wrk, port, self.script, self.plan.seconds, self.plan.connections)
        return Measured(variant, result, committed(self.db) - before, warm)

    def round_trip(self, delay_ms: float) -> float:
        with gunicorn(self.served("none", delay_ms), self.probe) as port:
            check_pages(port, self.names[:50])
            return round_trip_ms(port)

    def warm(self) -> None:
        """Fill each cache with every profile, checking every page on the way."""
        for variant in CACHED:
            with gunicorn(self.served(variant, 0), self.probe) as port:
                check_pages(port, self.names)


def measure_phase(bench: Bench, delay_ms: float) -> list[Measured]:
    """Every variant once per round, in an order rotated each round."""
    runs = []
    for n in range(bench.plan.rounds):
        for variant in VARIANTS[n % 3 :] + VARIANTS[: n % 3]:
            runs.append(bench.measure(variant, delay_ms))
            say(f"  {runs[-1].line()}")
    return runs


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    plan, markdown = parse(argv)
    db = Database.from_settings()
    redis_url = bench_settings.REDIS_URL
    wrk = ensure_wrk()
    logdir = Path(tempfile.mkdtemp(prefix="cs-load-"))
    names = usernames(PROFILES)
    requests = mix(names)
    write_script(logdir / "mix.lua", requests)
    bench = Bench(plan, wrk, db, redis_url, logdir, logdir / "mix.lua", names)
    say(f"== set-up: database {db.name}, {PROFILES:,} profiles; logs in {logdir}")
    recreate(db)
    migrate(bench.served("none", 0).env())
    seed(db, names)
    delete_own_keys(redis_url)
    try:
        trips = {0.0: bench.round_trip(0), plan.delay_ms: bench.round_trip(plan.delay_ms)}
        bench.warm()
        phases = {}
        for delay in (0.0, plan.delay_ms):
            say(f"== added database latency {delay:g} ms")
            phases[delay] = measure_phase(bench, delay)
    except BaseException:
        say(f"logs kept in {logdir}")
        raise
    finally:
        delete_own_keys(redis_url)
    env = environment(plan, db, redis_url, wrk, requests.top_tenth_share, trips)
    result = report(env, phases)
    print(render_report(result, markdown))
    found = problems(phases)
    for problem in found:
        print(f"FAILED: {problem}", file=sys.stderr)
    if found:
        say(f"logs kept in {logdir}")
        return 1
    shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
