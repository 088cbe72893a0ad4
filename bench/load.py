"""Load benchmark: ``python bench/load.py [--quick] [--markdown PATH]``.

The example project's profile page, served by gunicorn from PostgreSQL and loaded by wrk,
without a cache, with our cache and with django-cacheops; then again with database latency
added. See docs/benchmarks-load.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
from bench.load_cpu import CpuMeter
from bench.load_report import Phase, Run, environment, problems, report
from bench.load_report import render as render_report
from bench.load_server import (
    PROBES,
    Served,
    Server,
    check_pages,
    committed,
    gunicorn,
    round_trip_ms,
)
from bench.load_setup import (
    Database,
    delete_own_keys,
    ensure_wrk,
    migrate,
    recreate,
    seed,
    usernames,
)
from bench.load_wrk import Result, mix, run, write_script

VARIANTS = ("none", "cachestrat", "cacheops")
CACHED = ("cachestrat", "cacheops")
PROFILES = 1000
#: Pages whose answer is checked on each server before it is loaded.
CHECKED = 50
#: wrk's unmeasured run on each server before the measured ones.
WARM_SECONDS = 1.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float
    connections: int
    delay_ms: float


FULL = Plan(rounds=8, seconds=4, connections=16, delay_ms=1.0)
QUICK = Plan(rounds=2, seconds=2, connections=16, delay_ms=1.0)


def parse(argv: list[str]) -> tuple[Plan, Path | None]:
    parser = argparse.ArgumentParser(prog="bench/load.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two rounds of 2 s runs")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 8, quick 2)")
    parser.add_argument("--seconds", type=float, help="length of one measured wrk run (default 4)")
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
    dbs: dict[str, Database]  # one copy of the database per variant
    redis_url: str
    logdir: Path
    script: Path
    names: list[str]

    def served(self, variant: str, delay_ms: float) -> Served:
        return Served(variant, delay_ms, self.dbs[variant], self.redis_url, self.logdir)

    def load(self, port: int, seconds: float) -> Result:
        return run(self.wrk, port, self.script, seconds, self.plan.connections)

    def fill(self) -> None:
        """Ask each cached variant for every page once, so that the runs find a warm cache."""
        for variant in CACHED:
            with gunicorn(self.served(variant, 0), self.probe) as server:
                check_pages(server.port, self.names)

    @property
    def probe(self) -> str:
        return f"/u/{self.names[0]}/"

    def phase(self, delay_ms: float) -> Phase:
        """Serve every variant at once, each from its own database, and rotate the runs.

        The queries of a variant are its database's, counted from before its server
        starts until after it stops.
        """
        before = {v: committed(db) for v, db in self.dbs.items()}
        with contextlib.ExitStack() as stack:
            servers = {
                v: stack.enter_context(gunicorn(self.served(v, delay_ms), self.probe))
                for v in VARIANTS
            }
            trip = round_trip_ms(servers["none"].port)
            for server in servers.values():
                check_pages(server.port, self.names[:CHECKED])
            extra = dict.fromkeys(VARIANTS, 1 + CHECKED)  # the readiness probe, the checks
            # Unmeasured first: the workers' first requests (templates, connections).
            warm = {v: self.load(server.port, WARM_SECONDS) for v, server in servers.items()}
            runs = self.rotate(servers)
        queries = {v: committed(db) - before[v] for v, db in self.dbs.items()}
        queries["none"] -= PROBES  # the round-trip probe's own statements
        errors = {v: self.served(v, delay_ms).fail_open_reads() for v in VARIANTS}
        return Phase(delay_ms, trip, runs, warm, extra, queries, errors)

    def rotate(self, servers: dict[str, Server]) -> list[Run]:
        """Every variant once per round, in an order rotated each round."""
        runs = []
        for n in range(self.plan.rounds):
            for variant in VARIANTS[n % 3 :] + VARIANTS[: n % 3]:
                runs.append(self.measure(variant, servers[variant]))
                say(f"  {runs[-1].line()}")
        return runs

    def measure(self, variant: str, server: Server) -> Run:
        """One wrk run, and the CPU the server's workers and its database's sessions spent."""
        meter = CpuMeter(server.pid, self.dbs[variant])
        meter.start()
        result = self.load(server.port, self.plan.seconds)
        app, pg = meter.stop()
        return Run(variant, result, app, pg)


def prepare(db: Database, served: Served, names: list[str]) -> dict[str, Database]:
    """The database with its profiles, copied once per variant."""
    recreate(db)
    migrate(served.env())
    seed(db, names)
    copies = {v: db.copy(v) for v in VARIANTS}
    for copy in copies.values():
        recreate(copy, template=db)
    return copies


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    plan, markdown = parse(argv)
    load_at_start = os.getloadavg()
    db = Database.from_settings()
    redis_url = bench_settings.REDIS_URL
    wrk = ensure_wrk()
    logdir = Path(tempfile.mkdtemp(prefix="cs-load-"))
    names = usernames(PROFILES)
    requests = mix(names)
    write_script(logdir / "mix.lua", requests)
    say(f"== set-up: database {db.name}, {PROFILES:,} profiles; logs in {logdir}")
    dbs = prepare(db, Served("none", 0, db, redis_url, logdir), names)
    bench = Bench(plan, wrk, dbs, redis_url, logdir, logdir / "mix.lua", names)
    delete_own_keys(redis_url)
    try:
        bench.fill()
        phases = []
        for delay in (0.0, plan.delay_ms):
            say(f"== added database latency {delay:g} ms")
            phases.append(bench.phase(delay))
    except BaseException:
        say(f"logs kept in {logdir}")
        raise
    finally:
        delete_own_keys(redis_url)
    env = environment(plan, db, redis_url, wrk, requests.top_tenth_share, phases, load_at_start)
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
