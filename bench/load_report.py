"""The load benchmark's results: per-run figures, checks, tables with ratios to no cache."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import redis

from bench.load_server import THREADS, WORKERS
from bench.load_wrk import MIX_LENGTH, ZIPF_S, Result
from bench.report import Line, Report, Section, Target, render_markdown, render_text
from bench.timing import summarize

if TYPE_CHECKING:
    from bench.load import Plan
    from bench.load_setup import Database

LABELS = {
    "none": "no cache (Profile.objects)",
    "cachestrat": "django-cachestrat (Profile.cached)",
    "cacheops": "django-cacheops (objects, ops get)",
}

#: A request of the uncached page runs one query. A cached page runs none once the cache is
#: warm, but a worker's first cache call checks the database for invalidations that missed
#: Redis (one transaction), and the requests its other threads serve meanwhile read the
#: database (fail-open). So a cached variant may run 1% of its requests in queries, plus
#: STARTUP_QUERIES for each server thread.
MIN_UNCACHED_QUERIES = 0.95
MAX_CACHED_QUERIES = 0.01
STARTUP_QUERIES = 10


@dataclass(frozen=True)
class Run:
    """One measured wrk run of one variant."""

    variant: str
    result: Result
    app_cpu: float  # seconds of CPU of the server's workers during the run
    db_cpu: float  # seconds of CPU of its database's sessions during the run

    @property
    def app_ms(self) -> float:
        """CPU milliseconds of the server's workers per request."""
        return self.app_cpu * 1000 / max(1, self.result.requests)

    @property
    def db_ms(self) -> float:
        """CPU milliseconds of PostgreSQL's sessions per request."""
        return self.db_cpu * 1000 / max(1, self.result.requests)

    def line(self) -> str:
        r = self.result
        return (
            f"{self.variant:10} {r.rps:8,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
            f"p99 {r.p99_ms:6.2f} ms  CPU/request: app {self.app_ms:.2f} ms, "
            f"PostgreSQL {self.db_ms:.2f} ms"
        )


@dataclass(frozen=True)
class Phase:
    """The runs at one added latency, and what each variant's database did meanwhile."""

    delay_ms: float
    round_trip_ms: float
    runs: list[Run]
    warm: dict[str, Result]  # the unmeasured wrk run of each variant
    extra: dict[str, int]  # requests sent besides wrk's: readiness probe, page checks
    queries: dict[str, int]
    redis_errors: dict[str, int]  # Redis calls that failed, served from the database

    def of(self, variant: str) -> list[Result]:
        return [run.result for run in self.runs if run.variant == variant]

    def runs_of(self, variant: str) -> list[Run]:
        return [run for run in self.runs if run.variant == variant]

    def requests(self, variant: str) -> int:
        served = [*self.of(variant), self.warm[variant]]
        return sum(r.requests for r in served) + self.extra[variant]

    def per_request(self, variant: str) -> float:
        return self.queries[variant] / max(1, self.requests(variant))

    def qps(self, variant: str) -> float:
        served = [*self.of(variant), self.warm[variant]]
        return self.queries[variant] / sum(r.seconds for r in served)


def problems(phases: list[Phase]) -> list[str]:
    """What shows a variant not doing what it says, or requests that failed."""
    found = []
    for phase in phases:
        for variant in LABELS:
            where = f"{variant} at +{phase.delay_ms:g} ms"
            for result in [phase.warm[variant], *phase.of(variant)]:
                if any(result.errors.values()):
                    found.append(f"{where}: wrk errors {result.errors}")
            queries, per_request = phase.queries[variant], phase.per_request(variant)
            if variant == "none" and per_request < MIN_UNCACHED_QUERIES:
                found.append(f"{where}: {per_request:.3f} queries/request, expected ~1")
            allowed = MAX_CACHED_QUERIES * phase.requests(variant)
            allowed += STARTUP_QUERIES * WORKERS * THREADS
            if variant != "none" and queries > allowed:
                found.append(f"{where}: {queries} queries, at most {allowed:.0f} expected")
    return found


HEADER = (
    "Variant",
    "req/s",
    "x no cache",
    "p50 ms",
    "x no cache",
    "p99 ms",
    "x no cache",
    "app CPU ms/req",
    "x no cache",
    "DB CPU ms/req",
    "DB queries/s",
    "queries/req",
    "Redis errors",
)


def _paired(phase: Phase, variant: str, attr: str) -> list[float]:
    mine = [_value(r, attr) for r in phase.runs_of(variant)]
    base = [_value(r, attr) for r in phase.runs_of("none")]
    return [a / b for a, b in zip(mine, base, strict=True)]


def _value(run: Run, attr: str) -> float:
    return float(getattr(run, attr) if hasattr(run, attr) else getattr(run.result, attr))


def section(phase: Phase) -> Section:
    lines = []
    for variant, label in LABELS.items():
        cells = [label]
        for attr in ("rps", "p50_ms", "p99_ms", "app_ms"):
            value = statistics.median(_value(r, attr) for r in phase.runs_of(variant))
            ratio = statistics.median(_paired(phase, variant, attr))
            cells += [f"{value:,.0f}" if attr == "rps" else f"{value:.2f}", f"{ratio:.2f}"]
        cells.append(f"{statistics.median(r.db_ms for r in phase.runs_of(variant)):.2f}")
        cells.append(f"{phase.qps(variant):,.0f}")
        cells.append(f"{phase.per_request(variant):.3f}")
        cells.append(f"{phase.redis_errors[variant]:,}")
        lines.append(Line(tuple(cells)))
    title = f"Profile page, database latency added: {phase.delay_ms:g} ms"
    return Section(title, HEADER, lines)


def targets(phase: Phase) -> list[Target]:
    out = []
    for top, bottom in (("cachestrat", "none"), ("cacheops", "none"), ("cachestrat", "cacheops")):
        a = [r.rps for r in phase.of(top)]
        b = [r.rps for r in phase.of(bottom)]
        per_round = [x / y for x, y in zip(a, b, strict=True)]
        name = f"req/s {top} ÷ {bottom}, +{phase.delay_ms:g} ms"
        value = statistics.median(a) / statistics.median(b)
        out.append(Target(name, value, per_round=summarize(per_round)))
    return out


def report(env: list[tuple[str, str]], phases: list[Phase]) -> Report:
    sections = [section(phase) for phase in phases]
    return Report(env, sections, [t for phase in phases for t in targets(phase)])


def render(result: Report, markdown: Path | None) -> str:
    if markdown is not None:
        markdown.write_text(render_markdown(result))
    return render_text(result)


def environment(
    plan: Plan,
    db: Database,
    redis_url: str,
    wrk: str,
    top_share: float,
    phases: list[Phase],
    load_at_start: tuple[float, float, float],
) -> list[tuple[str, str]]:
    pg, redis_version, wrk_version = _versions(db, redis_url, wrk)
    trip_text = "; ".join(f"+{p.delay_ms:g} ms: {p.round_trip_ms:.2f} ms" for p in phases)
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Machine", f"{_cpu()}, {os.cpu_count()} cores, {platform.platform()}"),
        (
            "Load average (1, 5, 15 min)",
            f"{_load(load_at_start)} at the start, {_load(os.getloadavg())} at the end",
        ),
        ("Python / Django", f"{platform.python_version()} / {metadata.version('django')}"),
        (
            "Server",
            f"gunicorn {metadata.version('gunicorn')}, {WORKERS} gthread workers "
            f"of {THREADS} threads, DEBUG off, persistent database connections",
        ),
        (
            "Client",
            f"wrk {wrk_version}: 1 thread, "
            f"{plan.connections} keep-alive connections, {plan.seconds:g} s per run",
        ),
        ("Rounds", f"{plan.rounds} per added latency, each variant once, order rotated"),
        (
            "Request mix",
            f"{MIX_LENGTH:,} requests over 1,000 profiles, Zipf s={ZIPF_S:g}: "
            f"the top 10% of profiles get {top_share:.0%} of requests",
        ),
        (
            "PostgreSQL / Redis",
            f"{pg} at {db.config['HOST']}:{db.config['PORT']} / {redis_version} at {redis_url}",
        ),
        ("django-cacheops", metadata.version("django-cacheops")),
        ("Added database latency", "a sleep before each statement, in the app (execute wrapper)"),
        ("SELECT 1 round trip in the app (median)", trip_text),
    ]


def _versions(db: Database, redis_url: str, wrk: str) -> tuple[str, str, str]:
    """The versions of the PostgreSQL server, the Redis server and wrk."""
    with db.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    client = redis.Redis.from_url(redis_url)
    redis_version = str(client.info("server")["redis_version"])
    client.close()
    wrk_line = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    return str(row[0]) if row else "?", redis_version, [*wrk_line.split(), "?", "?"][1]


def _load(averages: tuple[float, float, float]) -> str:
    return " ".join(f"{n:.2f}" for n in averages)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
