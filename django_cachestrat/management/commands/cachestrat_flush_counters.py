"""``manage.py cachestrat_flush_counters``: the write-behind flush, without Celery."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cachestrat.flush import counter_models, flush_all, flush_model


class Command(BaseCommand):
    help = "Apply pending write-behind counter increments to the database now."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", metavar="app_label.Model")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["models"]:
            results = [r for label in options["models"] for r in flush_model(self._model(label))]
        else:
            results = flush_all()
        for r in results:
            note = " (already applied: acknowledged)" if r.duplicate else ""
            note += " (reclaimed)" if r.reclaimed else ""
            self.stdout.write(
                f"{r.model} stripe {r.stripe}: {r.rows} rows, {r.increments} increments, "
                f"{r.dead_letters} dead letters in {r.duration_ms:.1f} ms{note}"
            )
        self.stdout.write(self.style.SUCCESS(f"Flushed {len(results)} batches."))

    @staticmethod
    def _model(label: str) -> Any:
        try:
            model = apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise CommandError(f"{label!r} is not an installed model ({exc}).") from None
        if model not in counter_models():
            raise CommandError(f"{label} has no write-behind counters (CacheMeta.counters).")
        return model
