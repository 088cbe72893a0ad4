"""``manage.py cachestrat_invalidate``: drop rows, a model's namespace, or every cached model."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models

from django_cachestrat import invalidation
from django_cachestrat.inspection import invalidate_rows
from django_cachestrat.options import cached_models
from django_cachestrat.pending import pending
from django_cachestrat.plan import plan_for

from ._common import (
    Progress,
    add_progress_arguments,
    cached_model,
    clean_pk,
    publish_stats,
    redis_guard,
)


class Command(BaseCommand):
    help = (
        "Drop cached rows after writes Django did not see (another service, psql). "
        "With pks, drops those rows; with a model alone, flushes the model's whole namespace "
        "(one INCR, O(1)); with --all, flushes every cached model."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "model", nargs="?", metavar="app_label.Model", help="A cached model, e.g. auth.User."
        )
        parser.add_argument(
            "pks", nargs="*", metavar="pk", help="Rows to drop; none: flush the whole model."
        )
        parser.add_argument("--all", action="store_true", help="Flush every cached model.")
        add_progress_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        label, pks = options["model"], options["pks"]
        if options["all"] and label:
            raise CommandError("Give either app_label.Model (with or without pks) or --all.")
        if not options["all"] and not label:
            raise CommandError("Name a cached model (app_label.Model [pk ...]) or pass --all.")
        if options["all"]:
            self._flush_all(options["progress"])
        elif pks:
            self._invalidate(cached_model(label), pks)
        else:
            self._flush(cached_model(label))
        publish_stats()

    def _flush(self, model: type[models.Model]) -> None:
        with redis_guard("flush the cache"):
            invalidation.flush(model)
            _delivered()
        name = model._meta.label
        self.stdout.write(
            self.style.SUCCESS(f"Flushed the namespace of {name}: every cached row is a miss.")
        )

    def _invalidate(self, model: type[models.Model], raw_pks: list[str]) -> None:
        plan = plan_for(model)
        pks = list(dict.fromkeys(clean_pk(plan, raw) for raw in raw_pks))
        with redis_guard("invalidate the rows"):
            invalidate_rows(model, pks)
            _delivered()
        shown = ", ".join(str(pk) for pk in pks)
        rows = "row" if len(pks) == 1 else "rows"
        self.stdout.write(
            self.style.SUCCESS(f"Invalidated {len(pks)} {rows} of {model._meta.label}: {shown}.")
        )

    def _flush_all(self, show: bool | None) -> None:
        targets = sorted(cached_models(), key=lambda m: m._meta.label)
        progress = Progress(self.stderr, len(targets), "Flushing", show)
        with redis_guard("flush the cache"):
            for model in targets:
                invalidation.flush(model)
                progress.advance()
            _delivered()
        progress.close()
        names = ", ".join(m._meta.label for m in targets) or "none"
        count = len(targets)
        self.stdout.write(
            self.style.SUCCESS(f"Flushed {count} cached model{'s' * (count != 1)}: {names}.")
        )


def _delivered() -> None:
    """Make sure what fail-open kept for later reached Redis: this process exits soon."""
    if pending:
        pending.replay()  # a Redis error here rises to redis_guard
