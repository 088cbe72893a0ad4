"""``manage.py cachestrat_warm``: fill the cache with a model's rows, batch by batch in pk order."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models, router

from django_cachestrat import reads
from django_cachestrat.plan import ModelPlan, plan_for

from ._common import (
    Progress,
    add_progress_arguments,
    cached_model,
    positive_int,
    publish_stats,
    redis_errors,
    redis_guard,
)

#: Rows per batch unless --batch says otherwise.
DEFAULT_BATCH = 500


@dataclasses.dataclass
class Tally:
    """What warming did, from the model's statistics counters before and after."""

    rows: int = 0  # rows read from the database
    filled: int = 0  # stored by this command
    cached: int = 0  # already in the cache
    batches: int = 0

    @property
    def skipped(self) -> int:
        """Rows neither stored nor found: another reader held the lease, or a write won."""
        return max(0, self.rows - self.filled - self.cached)


class Command(BaseCommand):
    help = (
        "Fill the cache with every row of a cached model (or the first --limit rows by pk), "
        "reading the rows in batches in pk order. Rows already cached are left as they are."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="app_label.Model", help="A cached model.")
        parser.add_argument(
            "--batch",
            type=positive_int,
            default=DEFAULT_BATCH,
            metavar="N",
            help=f"Rows per batch, at least 1 (default: {DEFAULT_BATCH}).",
        )
        parser.add_argument(
            "--limit",
            type=positive_int,
            default=None,
            metavar="M",
            help="Warm only the first M rows by pk (default: every row).",
        )
        add_progress_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        model = cached_model(options["model"])
        batch, limit = options["batch"], options["limit"]
        progress = Progress(self.stderr, 0, "Warming", options["progress"])
        if progress.enabled:
            progress.total = _count(model, limit)  # one COUNT, only for the bar
        started = time.perf_counter()
        with redis_guard("warm the cache"):
            tally = warm(plan_for(model), batch, limit, progress)
        progress.close()
        publish_stats()
        self.stdout.write(self.style.SUCCESS(_summary(model, tally, time.perf_counter() - started)))


def warm(plan: ModelPlan, batch: int, limit: int | None, progress: Progress) -> Tally:
    """Read each batch's pks (keyset pagination), then fill the rows not cached under
    leases: a lease must be taken before a row is read, so the pks come first."""
    errors = redis_errors()
    tally = Tally()
    for pks in batches(plan.model, batch, limit):
        tally.filled += reads.refill(plan, pks)
        if redis_errors() != errors:  # fail-open served the batch, but stored nothing
            raise CommandError(
                f"Redis failed while warming, after {tally.rows} rows; run the command again."
            )
        tally.rows += len(pks)
        tally.batches += 1
        progress.advance(len(pks))
    tally.cached = tally.rows - tally.filled
    return tally


def batches(model: type[models.Model], size: int, limit: int | None) -> Iterator[list[Any]]:
    """The pks in order, ``size`` at a time: ``pk > last`` and a LIMIT, one query each."""
    manager = model._base_manager.using(router.db_for_read(model))
    last: Any = None
    left = limit
    while left is None or left > 0:
        query = manager.order_by("pk")
        if last is not None:
            query = query.filter(pk__gt=last)
        n = size if left is None else min(size, left)
        pks = list(query.values_list("pk", flat=True)[:n])
        if pks:
            yield pks
        if len(pks) < n:  # the table has no more rows: no empty query to find that out
            return
        last = pks[-1]
        left = None if left is None else left - len(pks)


def _count(model: type[models.Model], limit: int | None) -> int:
    total = model._base_manager.using(router.db_for_read(model)).count()
    return total if limit is None else min(total, limit)


def _summary(model: type[models.Model], tally: Tally, seconds: float) -> str:
    rate = tally.rows / seconds if seconds > 0 else 0.0
    text = (
        f"Warmed {model._meta.label}: {tally.rows} rows in {seconds:.2f} s "
        f"({rate:,.0f} rows/s, {tally.batches} batches): {tally.filled} filled, "
        f"{tally.cached} already cached"
    )
    if tally.skipped:
        text += f", {tally.skipped} left to other readers"
    return text + "."
