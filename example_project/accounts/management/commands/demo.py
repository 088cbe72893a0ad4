"""``manage.py demo``: cache-aside reads and invalidation on Profile, write-behind on Post."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.models import F, Sum
from django_redis import get_redis_connection
from redis.exceptions import RedisError

from django_cachestrat.conf import conf
from django_cachestrat.drain import BatchResult, drain_all
from example_project.blog.models import Post
from example_project.blog.sample import SAMPLE_POSTS, ensure_sample_posts

from ...measure import Measured, interleaved, once, side_by_side
from ...models import Profile
from ...sample import SAMPLE_PROFILES, ensure_sample_profiles

ROW = "  {call:<30} {step:<20} {queries:>7}  {latency:<15}  {note}"
COUNTERS = ("views", "likes")


class Command(BaseCommand):
    help = (
        "Measure what Profile.cached saves and when it goes to the database, then count "
        "Post views and likes write-behind and flush them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--reads", type=int, default=200, help="calls per repeated step")

    def handle(self, *args: Any, **options: Any) -> None:
        self.reads: int = options["reads"]
        if self.reads < 1:
            raise CommandError("--reads must be 1 or more")
        created = ensure_sample_profiles()
        created_posts = ensure_sample_posts()
        Profile.cached.flush()
        Post.cached.flush()
        # Increments left pending by the site or an interrupted run: applied first.
        leftover = sum(r.increments for r in _flush())
        jane = Profile.objects.get(username=SAMPLE_PROFILES[0]["username"])
        pks = list(Profile.objects.order_by("pk").values_list("pk", flat=True))
        slugs = [str(post["slug"]) for post in SAMPLE_POSTS]
        post_pks = list(
            Post.objects.filter(slug__in=slugs).order_by("pk").values_list("pk", flat=True)
        )
        self.header(created, len(pks), created_posts, len(post_pks), leftover)
        self.by_pk(jane.pk)
        self.by_username(jane.username)
        self.many(pks)
        self.invalidation(jane.pk)
        self.write_behind(post_pks, slugs[0])
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

    def write_behind(self, pks: list[Any], slug: str) -> None:
        self.section("Write-behind counters (CacheMeta.counters)")
        before = _totals(Post.cached.get_many(pks).values())
        added = self.increments(pks)
        pk = Post.objects.only("pk").get(slug=slug).pk
        self.pending(pk, slug)
        self.flush()
        self.settled(pk, slug, pks, (before[0] + added[0], before[1] + added[1]))

    def increments(self, pks: list[Any]) -> tuple[int, int]:
        """Count views and likes on every post in turns; returns (views, likes) added."""
        n, likes = self.reads, max(1, self.reads // 4)
        views_to, updates_to, likes_to = (itertools.cycle(pks) for _ in range(3))
        incr, update = interleaved(
            [
                lambda: Post.cached.incr(next(views_to), "views"),
                lambda: Post.objects.filter(pk=next(updates_to)).update(views=F("views") + 1),
            ],
            n,
        )
        each = f"{len(pks)} posts in turns"
        self.row("cached.incr(pk, 'views')", f"{n} increments", incr, 0, each, median=True)
        ratio = update.seconds / incr.seconds
        speed = f"incr is {ratio:.1f}x faster" if ratio >= 1 else f"incr is {1 / ratio:.1f}x slower"
        call = "update(views=F('views') + 1)"
        self.row(call, f"{n} database writes", update, n, speed, median=True)
        (liked,) = interleaved([lambda: Post.cached.incr(next(likes_to), "likes")], likes)
        self.row("cached.incr(pk, 'likes')", f"{likes} increments", liked, 0, each, median=True)
        return 2 * n, likes

    def pending(self, pk: Any, slug: str) -> None:
        """The database holds what was flushed; a read adds what is pending in Redis."""
        stored = once(lambda: Post.objects.get(pk=pk))
        self.row(f"objects.get(pk={pk})", "in the database", stored, 1, _counts(stored.value))
        call = f"cached.get(slug={slug!r})"
        # The first read misses twice: the slug -> pk pointer, then the row (invalidated by
        # the UPDATEs above). Neither read adds a query for the pending increments.
        for step, expected in (("read (2 misses)", 2), ("read again (hit)", 0)):
            read = once(lambda: Post.cached.get(slug=slug))
            pending = ", ".join(
                f"{getattr(read.value, f) - getattr(stored.value, f):+d}" for f in COUNTERS
            )
            self.row(call, step, read, expected, f"{_counts(read.value)} ({pending} pending)")

    def flush(self) -> None:
        """What the Celery task runs, in this process."""
        flushed = once(_flush)
        results = flushed.value
        rows = sum(r.rows for r in results)
        increments = sum(r.increments for r in results)
        applying = sum(r.duration_ms for r in results)
        note = f"{rows} rows, {increments} increments, {applying:.1f} ms in the database"
        self.row("drain_all()", f"{len(results)} batches", flushed, None, note)

    def settled(self, pk: Any, slug: str, pks: list[Any], expected: tuple[int, int]) -> None:
        stored = once(lambda: Post.objects.get(pk=pk))
        self.row(f"objects.get(pk={pk})", "in the database", stored, 1, _counts(stored.value))
        # The flush's UPDATE invalidated the row (and its slug pointer).
        read = once(lambda: Post.cached.get(slug=slug))
        same = "==" if _counts(read.value) == _counts(stored.value) else "!="
        note = f"{_counts(read.value)} ({same} database)"
        self.row(f"cached.get(slug={slug!r})", "read (2 misses)", read, 2, note)
        sums = Post.objects.filter(pk__in=pks).aggregate(*(Sum(f) for f in COUNTERS))
        in_db = (sums["views__sum"] or 0, sums["likes__sum"] or 0)
        in_read = _totals(Post.cached.get_many(pks).values())
        if in_db == in_read == expected:
            note = f"database == read: views {in_db[0]}, likes {in_db[1]}, none lost"
        else:
            # For example a batch claimed by a flusher that died less than
            # WRITE_BEHIND["RECLAIM_AFTER"] seconds ago: it and what queued behind it wait.
            note = self.style.WARNING(
                f"database views {in_db[0]}, likes {in_db[1]}; read views {in_read[0]}, "
                f"likes {in_read[1]}; expected views {expected[0]}, likes {expected[1]} "
                "(a batch still in flight elsewhere?)"
            )
        columns = {"call": f"all {len(pks)} posts", "step": "totals", "queries": "", "latency": ""}
        self.line(ROW.format(**columns, note=note))

    def header(
        self, created: int, count: int, created_posts: int, posts: int, leftover: int
    ) -> None:
        db = settings.DATABASES["default"]
        self.line("django-cachestrat demo: rows read through Redis, counters written behind")
        self.line("")
        self.line(f"  {'database':<10} {connection.vendor} ({_short(str(db['NAME']))})")
        self.line(f"  {'redis':<10} {settings.CACHES['default']['LOCATION']}")
        self.line(f"  {'profiles':<10} {count} ({created} created now)")
        self.line(f"  {'posts':<10} {posts} ({created_posts} created now)")
        self.line(f"  {'cache':<10} cached.flush(): the Profile and Post namespaces start empty")
        self.line(f"  {'counters':<10} {leftover} increments pending from before, flushed first")
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
        expected: int | None,
        note: str = "",
        *,
        median: bool = False,
    ) -> None:
        latency = f"{measured.seconds * 1000:8.3f} ms" + (" med" if median else "")
        if expected is not None and measured.queries != expected:
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
        self.line(
            "  http://127.0.0.1:8000/blog/     posts; a post page counts a view, its button a like"
        )
        self.line("  http://127.0.0.1:8000/admin/    the admin: a save there invalidates the row")
        interval = float(conf.WRITE_BEHIND["INTERVAL"])
        self.line(f"\nFlush views and likes every {interval:g} s with Celery, or once by hand:")
        found = Path(sys.executable).with_name("celery")
        celery = _short(str(found)) if found.exists() else "celery"
        self.line(f"  {celery} -A example_project worker -l info")
        self.line(f"  {celery} -A example_project beat -l info")
        self.line(f"  {manage} cachestrat_flush_counters")

    def line(self, text: str) -> None:
        self.stdout.write(text)


def _flush() -> list[BatchResult]:
    """``drain_all()`` until nothing is left.

    One call takes one batch per stripe: usually all there is, but a batch a dead flusher
    left behind is applied first and the increments pending behind it at the next call.
    """
    results: list[BatchResult] = []
    for _ in range(5):
        batches = drain_all()
        if not batches:
            break
        results += batches
    return results


def _counts(post: Post) -> str:
    return f"views {post.views}, likes {post.likes}"


def _totals(posts: Iterable[Post]) -> tuple[int, int]:
    views = likes = 0
    for post in posts:
        views += post.views
        likes += post.likes
    return views, likes


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
