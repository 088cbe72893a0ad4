"""``manage.py cachestrat_inspect``: one row as cached beside the database row, keys and lease."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_cachestrat.inspection import RowReport, inspect_row
from django_cachestrat.keys import key_part
from django_cachestrat.plan import plan_for

from ._common import cached_model, clean_pk, redis_guard

#: Width of the "cached" column; longer values are cut with an ellipsis.
CELL = 40
#: Marks a field whose cached value differs from the database.
DIFFERS = "*"
#: How an empty string is shown, so it does not read as a missing value.
EMPTY = "''"
#: States of the row key that hold a row's values (served, or left from before a flush).
CACHED_ROW = ("row", "old_generation")


class Command(BaseCommand):
    help = (
        "Show one row as it is cached beside the database row, field by field, marking "
        f"the fields that differ with {DIFFERS!r}; with the key, TTL left, lease state, "
        "pending counter increments and the lookup keys. Reads only; exits 0 whatever it finds."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("model", metavar="app_label.Model", help="A cached model.")
        parser.add_argument("pk", help="The primary key of the row.")

    def handle(self, *args: Any, **options: Any) -> None:
        model = cached_model(options["model"])
        pk = clean_pk(plan_for(model), options["pk"])
        with redis_guard("inspect the cache"):
            report = inspect_row(model, pk)
        self.stdout.write(self.style.MIGRATE_HEADING(f"{model._meta.label} pk={pk}"))
        for name, text in _facts(report):
            self.stdout.write(f"  {name:<9} {text}")
        self._fields(report, model._meta.label)
        pending = _pending(report)
        if pending:
            self.stdout.write(f"\nPending write-behind increments (reads add them): {pending}")
        if report.lookups:
            self.stdout.write("\nLookup keys")
        for lookup in report.lookups:
            target = f"-> pk {lookup.points_to}" if lookup.points_to else lookup.state_text
            ttl = f", TTL {_ttl(lookup.ttl_ms)}" if lookup.ttl_ms is not None else ""
            self.stdout.write(f"  {lookup.field}={lookup.value}  {lookup.key}  {target}{ttl}")

    def _fields(self, report: RowReport, label: str) -> None:
        if not report.fields:
            return
        has_cached = report.state in CACHED_ROW
        width = max(len(f.name) for f in report.fields)
        self.stdout.write("")
        self.stdout.write(f"  {'field':<{width}}  {'cached':<{CELL}}  database")
        for field in report.fields:
            mark = DIFFERS if field.differs else " "
            cached = _cut((field.cached or EMPTY) if has_cached else "-")
            database = _cut((field.database or EMPTY) if report.in_database else "-")
            line = f"{mark} {field.name:<{width}}  {cached:<{CELL}}  {database}".rstrip()
            self.stdout.write(self.style.WARNING(line) if field.differs else line)
        self.stdout.write("")
        self.stdout.write(_verdict(report, label))


def _facts(report: RowReport) -> list[tuple[str, str]]:
    timing = f" Its database read took {report.recompute_us:,} µs." if report.recompute_us else ""
    lease = "free"
    if report.lease_ttl_ms is not None:
        lease = f"held: a reader is filling it (expires in {_ttl(report.lease_ttl_ms)})"
    return [
        ("key", report.key),
        ("cached", report.state_text + (timing if report.state == "row" else "")),
        ("TTL left", _ttl(report.ttl_ms)),
        ("lease", lease),
        ("database", "row found" if report.in_database else "no row with this pk"),
    ]


def _verdict(report: RowReport, label: str) -> str:
    fix = f"Fix: manage.py cachestrat_invalidate {label} {key_part(report.pk)}"
    if report.state not in CACHED_ROW:
        return "Only the database row is shown: no cached row is served for it."
    if report.state == "old_generation":
        return "The cached row is no longer served (the model was flushed since): a miss."
    if not report.in_database:
        return f"The database has no such row: the cached row is stale. {fix}"
    differ = len(report.differing)
    if not differ:
        return "The cached row matches the database."
    fields = "field differs" if differ == 1 else "fields differ"
    return (
        f"{differ} {fields} ({DIFFERS}): the row changed where Django could not see it "
        f"(another service, psql). {fix}"
    )


def _pending(report: RowReport) -> str:
    """Increments in Redis not yet in the database, per counter, e.g. ``likes +3``."""
    parts = []
    for field in report.fields:
        if field.pending or field.in_flight:
            flushing = f" ({field.in_flight:+d} being flushed)" if field.in_flight else ""
            parts.append(f"{field.name} {field.pending:+d}{flushing}")
    return ", ".join(parts)


def _ttl(ms: int | None) -> str:
    if ms is None:
        return "-"
    if ms == -1:
        return "no expiry"
    return f"{ms / 1000:,.1f} s"


def _cut(text: str) -> str:
    return text if len(text) <= CELL else text[: CELL - 1] + "…"
