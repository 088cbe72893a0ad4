"""``manage.py cachestrat_stats``: hits, misses and fills per cached model, all processes."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cachestrat import stats
from django_cachestrat.options import cached_models

from ._common import redis_guard

#: Longest window the statistics cover, in minutes.
MAX_MINUTES = 24 * 60

#: (heading, counter) of the per-model table; the hit ratio and the medians are computed.
COLUMNS = (
    ("hits", "hits"),
    ("misses", "misses"),
    ("hit ratio", "hit_ratio"),
    ("fills", "fills"),
    ("median hit µs", "median_hit_us"),
    ("median fill µs", "median_fill_us"),
    ("rejected", "rejected_fills"),
    ("lease waits", "lease_waits"),
    ("invalidations", "invalidations"),
)
REDIS_COLUMNS = (("redis errors", "redis_errors"), ("breaker trips", "breaker_trips"))


class Command(BaseCommand):
    help = (
        "Show cache statistics per cached model over the last minutes, added up across "
        "every process: hits, misses, hit ratio, fills, median hit and fill times, rejected "
        "fills, lease waits and invalidations; then Redis errors and circuit-breaker trips."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--minutes",
            type=int,
            default=60,
            metavar="N",
            help=f"Window in minutes, 1 to {MAX_MINUTES} (default: 60).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print one JSON object instead of tables."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        minutes = options["minutes"]
        if not 1 <= minutes <= MAX_MINUTES:
            raise CommandError(f"--minutes must be between 1 and {MAX_MINUTES}, got {minutes}.")
        with redis_guard("read the statistics"):
            summaries = stats.read(minutes)
        report = build_report(summaries, minutes)
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(render(report))


def build_report(summaries: dict[str, stats.Summary], minutes: int) -> dict[str, Any]:
    """Every cached model (idle ones too) and any other label seen, then Redis-wide figures."""
    labels = [m._meta.label_lower for m in cached_models()]
    labels += sorted(set(summaries) - set(labels) - {stats.REDIS_LABEL})
    redis = summaries.get(stats.REDIS_LABEL)
    return {
        "minutes": minutes,
        "models": {label: _model_figures(summaries.get(label)) for label in sorted(labels)},
        "redis": {name: (redis.counts.get(name, 0) if redis else 0) for _, name in REDIS_COLUMNS},
    }


def _model_figures(summary: stats.Summary | None) -> dict[str, Any]:
    counts = dict.fromkeys(stats.COUNTERS, 0)
    counts.pop("redis_errors")
    counts.pop("breaker_trips")
    if summary is None:
        return {**counts, "hit_ratio": None, "median_hit_us": None, "median_fill_us": None}
    counts.update((k, v) for k, v in summary.counts.items() if k in counts)
    return {
        **counts,
        "hit_ratio": summary.hit_ratio,
        "median_hit_us": summary.median_hit_us,
        "median_fill_us": summary.median_fill_us,
    }


def render(report: dict[str, Any]) -> str:
    models = report["models"]
    head = ["model", *(heading for heading, _ in COLUMNS)]
    rows = [
        [label, *(_cell(name, figures[name]) for _, name in COLUMNS)]
        for label, figures in models.items()
    ]
    redis = report["redis"]
    redis_rows = [[stats.REDIS_LABEL, *(str(redis[name]) for _, name in REDIS_COLUMNS)]]
    lines = [f"Cache statistics, last {report['minutes']} minutes, all processes", ""]
    lines += _table(head, rows) if rows else ["No cached models."]
    lines += ["", *_table(["", *(heading for heading, _ in REDIS_COLUMNS)], redis_rows)]
    return "\n".join(lines)


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name == "hit_ratio":
        return f"{value:.1%}"
    if name.startswith("median"):
        return f"{value:,.1f}"
    return f"{value:,}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(head), line(["-" * w for w in widths]), *(line(row) for row in rows)]
