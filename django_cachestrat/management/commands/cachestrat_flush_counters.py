"""``manage.py cachestrat_flush_counters``: the write-behind flush, without Celery."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models

from django_cachestrat.drain import (
    BatchResult,
    DrainError,
    StripeError,
    counter_models,
    drain_model,
    forget_old_batches,
)

from ._common import Progress, add_progress_arguments, cached_model, redis_guard

TOTALS = ("rows", "increments", "dead_letters")


class Command(BaseCommand):
    help = (
        "Apply pending write-behind counter increments to the database now, exactly once "
        "(safe while Celery workers flush too). Without models, flushes every model that "
        "has counters."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "models",
            nargs="*",
            metavar="app_label.Model",
            help="Models with CacheMeta.counters (default: all of them).",
        )
        parser.add_argument(
            "--json", action="store_true", help="Print the batches and totals as JSON."
        )
        add_progress_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        named = [_counter_model(label) for label in options["models"]]
        started = time.perf_counter()
        with redis_guard("flush the counters"):
            results, errors = self._flush(
                list(dict.fromkeys(named)) or counter_models(), options["progress"]
            )
        if not (named or errors):
            forget_old_batches()  # as the periodic flush of every model does
        elapsed_ms = (time.perf_counter() - started) * 1000
        if options["json"]:
            report = _report(results, elapsed_ms)
            report["errors"] = [str(error) for error in errors]
            self.stdout.write(json.dumps(report, indent=2))
            if errors:
                raise CommandError(str(DrainError(errors, results)))
            return
        for r in results:
            note = " (already applied: acknowledged)" if r.duplicate else ""
            note += " (reclaimed)" if r.reclaimed else ""
            self.stdout.write(
                f"{r.model} stripe {r.stripe}: {r.rows} rows, {r.increments} increments, "
                f"{r.dead_letters} dead letters in {r.duration_ms:.1f} ms{note}"
            )
        self.stdout.write(self.style.SUCCESS(_summary(_report(results, elapsed_ms))))
        if errors:
            raise CommandError(str(DrainError(errors, results)))

    def _flush(
        self, targets: list[type[models.Model]], show: bool | None
    ) -> tuple[list[BatchResult], list[StripeError]]:
        """Flush every model, even after one fails; return the batches and the failures."""
        progress = Progress(self.stderr, len(targets), "Flushing", show)
        results: list[BatchResult] = []
        errors: list[StripeError] = []
        for model in targets:
            try:
                results += drain_model(model)
            except DrainError as exc:
                results += exc.results
                errors += exc.errors
            progress.advance()
        progress.close()
        return results, errors


def _counter_model(label: str) -> type[models.Model]:
    model = cached_model(label)
    if model not in counter_models():
        raise CommandError(
            f"{model._meta.label} has no write-behind counters (CacheMeta.counters)."
        )
    return model


def _report(results: list[BatchResult], elapsed_ms: float) -> dict[str, Any]:
    totals: dict[str, Any] = {name: sum(getattr(r, name) for r in results) for name in TOTALS}
    totals["batches"] = len(results)
    totals["duplicates"] = sum(r.duplicate for r in results)
    totals["reclaimed"] = sum(r.reclaimed for r in results)
    totals["duration_ms"] = round(elapsed_ms, 1)
    return {"batches": [dataclasses.asdict(r) for r in results], "totals": totals}


def _summary(report: dict[str, Any]) -> str:
    t = report["totals"]
    text = (
        f"Flushed {t['batches']} batches: {t['rows']} rows, {t['increments']} increments, "
        f"{t['dead_letters']} dead letters in {t['duration_ms']:.1f} ms"
    )
    extra = [f"{t['duplicates']} already applied"] * bool(t["duplicates"])
    extra += [f"{t['reclaimed']} reclaimed"] * bool(t["reclaimed"])
    return text + (f" ({', '.join(extra)})." if extra else ".")
