"""``manage.py demo``: measure cache-aside reads and delete-on-save invalidation on Profile."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from ...measure import Measured, once, side_by_side
from ...models import Profile
from ...sample import SAMPLE_PROFILES, ensure_sample_profiles

ROW = "  {call:<30} {step:<20} {queries:>7}  {latency:<15}  {note}"


class Command(BaseCommand):
    help = "Measure what Profile.cached saves, and when it goes to the database."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reads", type=int, default=200, help="calls per repeated step")

    def handle(self, *args: Any, **options: Any) -> None:
        self.reads: int = options["reads"]
        if self.reads < 1:
            raise CommandError("--reads must be 1 or more")
        created = ensure_sample_profiles()
        Profile.cached.flush()
        jane = Profile.objects.get(username=SAMPLE_PROFILES[0]["username"])
        pks = list(Profile.objects.order_by("pk").values_list("pk", flat=True))
        self.header(created, len(pks))
        self.by_pk(jane.pk)
        self.by_username(jane.username)
        self.many(pks)
        self.invalidation(jane.pk)
        self.footer()

    def by_pk(self, pk: Any) -> None:
        self.section("Reads by primary key")
        call, n = f"cached.get(pk={pk})", self.reads
        first = once(lambda: Profile.cached.get(pk=pk))
        self.row(call, "first read (miss)", first, 1, "row stored")
        hits, plain = side_by_side(
            [lambda: Profile.cached.get(pk=pk), lambda: Profile.objects.get(pk=pk)], n
        )
        self.row(call, f"{n} reads (hits)", hits, 0, median=True)
        ratio = plain.seconds / hits.seconds
        speed = f"{ratio:.1f}x faster" if ratio >= 1 else f"{1 / ratio:.1f}x slower"
        self.row(
            f"objects.get(pk={pk})",
            f"{n} database reads",
            plain,
            n,
            f"cache is {speed}",
            median=True,
        )

    def by_username(self, username: str) -> None:
        self.section("Read by a unique field (CacheMeta.lookups)")
        call = f"cached.get(username={username!r})"
        first = once(lambda: Profile.cached.get(username=username))
        self.row(call, "first read (miss)", first, 1, "username -> pk stored")
        again = once(lambda: Profile.cached.get(username=username))
        self.row(call, "second read (hit)", again, 0)

    def many(self, pks: list[Any]) -> None:
        self.section("Many rows in one round trip")
        call = f"cached.get_many({len(pks)} pks)"
        first = once(lambda: Profile.cached.get_many(pks))
        self.row(call, "first read", first, 1, f"{len(first.value)} rows, misses in 1 query")
        again = once(lambda: Profile.cached.get_many(pks))
        self.row(call, "second read (hits)", again, 0, f"{len(again.value)} rows")

    def invalidation(self, pk: Any) -> None:
        self.section("Delete-on-save invalidation")
        profile = Profile.cached.get(pk=pk)
        before = profile.karma
        profile.karma += 1
        saved = once(lambda: profile.save(update_fields=["karma"]))
        self.row("profile.save()", f"karma {before} -> {profile.karma}", saved, 1, "UPDATE")
        for step, expected in (("next read (miss)", 1), ("read again (hit)", 0)):
            read = once(lambda: Profile.cached.get(pk=pk))
            self.row(f"cached.get(pk={pk})", step, read, expected, f"karma = {read.value.karma}")

    def header(self, created: int, count: int) -> None:
        db = settings.DATABASES["default"]
        self.line("django-cachestrat demo: Profile rows read through Redis")
        self.line("")
        self.line(f"  {'database':<10} {connection.vendor} ({_short(str(db['NAME']))})")
        self.line(f"  {'redis':<10} {settings.CACHES['default']['LOCATION']}")
        self.line(f"  {'profiles':<10} {count} ({created} created now)")
        self.line(f"  {'cache':<10} Profile.cached.flush(): the Profile namespace starts empty")
        if not _redis_answers():
            warning = "Redis does not answer: reads fail open to the database, none is cached"
            self.line(f"  {'':<10} {self.style.WARNING(warning)}")
        self.line("")
        head = ROW.format(call="call", step="step", queries="queries", latency="latency", note="")
        self.line(head.rstrip())

    def section(self, title: str) -> None:
        self.line(f"\n  {self.style.MIGRATE_HEADING(title)}")

    def row(
        self,
        call: str,
        step: str,
        measured: Measured,
        expected: int,
        note: str = "",
        *,
        median: bool = False,
    ) -> None:
        latency = f"{measured.seconds * 1000:8.3f} ms" + (" med" if median else "")
        if measured.queries != expected:
            warning = self.style.WARNING(f"expected {expected} queries")
            note = f"{warning}; {note}" if note else warning
        columns = {"call": call, "step": step, "queries": measured.queries, "latency": latency}
        self.line(ROW.format(**columns, note=note).rstrip())

    def footer(self) -> None:
        n = self.reads
        self.line(f"\n  latency: one call; med: median of {n} calls, cache and database in turns")
        python = _short(sys.executable)
        manage = f"{python if python != sys.executable else 'python'} manage.py"
        self.line("\nOpen the site and the admin:")
        self.line(f"  {manage} createsuperuser")
        self.line(f"  {manage} runserver")
        self.line("  http://127.0.0.1:8000/          profiles, rows from Profile.cached.get_many")
        self.line("  http://127.0.0.1:8000/u/jane/   one profile, Profile.cached.get(username=...)")
        self.line("  http://127.0.0.1:8000/admin/    the admin: a save there invalidates the row")

    def line(self, text: str) -> None:
        self.stdout.write(text)


def _redis_answers() -> bool:
    try:
        return bool(get_redis_connection("default").ping())
    except (RedisError, OSError):
        return False


def _short(path: str) -> str:
    """A path relative to the current directory when it is inside it."""
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path
