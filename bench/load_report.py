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
#: warm, but each run starts fresh workers: a worker's first call checks the database for
#: invalidations that missed Redis (one transaction), and the requests its other threads
#: serve meanwhile read the database (fail-open). So a cached run may run 1% of its
#: requests in queries, plus STARTUP_QUERIES for each server thread.
MIN_UNCACHED_QUERIES = 0.95
MAX_CACHED_QUERIES = 0.01
STARTUP_QUERIES = 10


@dataclass(frozen=True)
class Measured:
    """A measured wrk run, the unmeasured one before it, and the queries of both."""

    variant: str
    result: Result
    queries: int
    warm: Result

    @property
    def requests(self) -> int:
        return self.result.requests + self.warm.requests

    @property
    def qps(self) -> float:
        return self.queries / (self.result.seconds + self.warm.seconds)

    @property
    def per_request(self) -> float:
        return self.queries / max(1, self.requests)

    def line(self) -> str:
        r = self.result
        return (
            f"{self.variant:10} {r.rps:8,.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
            f"p99 {r.p99_ms:6.2f} ms  {self.qps:8,.0f} queries/s"
        )


def problems(phases: dict[float, list[Measured]]) -> list[str]:
    """What shows a variant not doing what it says, or requests that failed."""
    found = []
    for delay, runs in phases.items():
        for m in runs:
            where = f"{m.variant} at +{delay:g} ms"
            for result in (m.warm, m.result):
                if any(result.errors.values()):
                    found.append(f"{where}: wrk errors {result.errors}")
            if m.variant == "none" and m.per_request < MIN_UNCACHED_QUERIES:
                found.append(f"{where}: {m.per_request:.3f} queries/request, expected ~1")
            allowed = MAX_CACHED_QUERIES * m.requests + STARTUP_QUERIES * WORKERS * THREADS
            if m.variant != "none" and m.queries > allowed:
                found.append(f"{where}: {m.queries} queries, at most {allowed:.0f} expected")
    return found


HEADER = (
    "Variant",
    "req/s",
    "x no cache",
    "p50 ms",
    "x no cache",
    "p99 ms",
    "x no cache",
    "DB queries/s",
    "queries/req",
)


def _paired(runs: list[Measured], variant: str, attr: str) -> list[float]:
    mine = [getattr(m.result, attr) for m in runs if m.variant == variant]
    base = [getattr(m.result, attr) for m in runs if m.variant == "none"]
    return [a / b for a, b in zip(mine, base, strict=True)]


def _median(runs: list[Measured], variant: str, attr: str) -> float:
    return statistics.median(getattr(m.result, attr) for m in runs if m.variant == variant)


def section(title: str, runs: list[Measured]) -> Section:
    lines = []
    for variant, label in LABELS.items():
        mine = [m for m in runs if m.variant == variant]
        cells = [label]
        for attr, fmt in (("rps", "{:,.0f}"), ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}")):
            ratio = statistics.median(_paired(runs, variant, attr))
            cells += [fmt.format(_median(runs, variant, attr)), f"{ratio:.2f}"]
        cells.append(f"{statistics.median(m.qps for m in mine):,.0f}")
        cells.append(f"{statistics.median(m.per_request for m in mine):.3f}")
        lines.append(Line(tuple(cells)))
    return Section(title, HEADER, lines)


def targets(delay: float, runs: list[Measured]) -> list[Target]:
    out = []
    for top, bottom in (("cachestrat", "none"), ("cacheops", "none"), ("cachestrat", "cacheops")):
        a = [m.result.rps for m in runs if m.variant == top]
        b = [m.result.rps for m in runs if m.variant == bottom]
        per_round = [x / y for x, y in zip(a, b, strict=True)]
        name = f"req/s {top} ÷ {bottom}, +{delay:g} ms"
        value = statistics.median(a) / statistics.median(b)
        out.append(Target(name, value, per_round=summarize(per_round)))
    return out


def report(env: list[tuple[str, str]], phases: dict[float, list[Measured]]) -> Report:
    sections, all_targets = [], []
    for delay, runs in phases.items():
        title = f"Profile page, database latency added: {delay:g} ms"
        sections.append(section(title, runs))
        all_targets += targets(delay, runs)
    return Report(env, sections, all_targets)


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
    trips: dict[float, float],
) -> list[tuple[str, str]]:
    with db.connect() as conn:
        row = conn.execute("SHOW server_version").fetchone()
        pg = str(row[0]) if row else "?"
    client = redis.Redis.from_url(redis_url)
    redis_version = str(client.info("server")["redis_version"])
    client.close()
    wrk_line = subprocess.run([wrk, "--version"], capture_output=True, text=True).stdout
    trip_text = "; ".join(f"+{d:g} ms: {ms:.2f} ms" for d, ms in trips.items())
    return [
        ("Date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("Machine", f"{_cpu()}, {os.cpu_count()} cores, {platform.platform()}"),
        ("Load average at the end", " ".join(f"{n:.2f}" for n in os.getloadavg())),
        ("Python / Django", f"{platform.python_version()} / {metadata.version('django')}"),
        (
            "Server",
            f"gunicorn {metadata.version('gunicorn')}, {WORKERS} gthread workers "
            f"of {THREADS} threads, DEBUG off, persistent database connections",
        ),
        (
            "Client",
            f"wrk {[*wrk_line.split(), '?', '?'][1]}: 1 thread, "
            f"{plan.connections} keep-alive connections, {plan.seconds:g} s per run",
        ),
        ("Rounds", f"{plan.rounds}, each variant once per round, order rotated"),
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


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
