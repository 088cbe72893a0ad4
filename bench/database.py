"""Set-up and clean-up: the benchmark database, its tables, seed rows, Redis keys; a log of
the SQL statements a block runs."""

from __future__ import annotations

import datetime
import decimal
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.db.models import Model
from django_redis import get_redis_connection
from psycopg import sql

from bench.benchapp.models import Article, Member, Post

MODELS = (Article, Member)

#: Key patterns this benchmark writes: the app's namespace for each model, the statistics
#: the app publishes (the benchmark database holds no other app's), its own keys, and the
#: naive cache-aside keys of the consistency cases.
OWN_PATTERNS = (
    "cs:benchapp.article:*",
    "cs:benchapp.member:*",
    "cs:stats:*",
    "bench:*",
    "naive:*",
)

WORDS = [
    "cache",
    "redis",
    "django",
    "model",
    "row",
    "lease",
    "stampede",
    "invalidation",
    "commit",
    "transaction",
    "query",
    "latency",
    "replica",
    "shard",
    "index",
    "vacuum",
    "tuple",
    "payload",
    "schema",
    "pipeline",
    "socket",
    "worker",
    "batch",
    "signal",
    "manager",
    "field",
    "decimal",
    "timestamp",
    "counter",
    "article",
    "author",
    "review",
    "draft",
    "published",
]


def ensure_database() -> None:
    """Create the benchmark database if it does not exist (via the ``postgres`` database)."""
    db = settings.DATABASES["default"]
    params = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "dbname": "postgres"}
    if db.get("PASSWORD"):
        params["password"] = db["PASSWORD"]
    with psycopg.connect(**params, autocommit=True) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
        if found.fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))


def create_schema(models: Sequence[type[Model]] = MODELS) -> None:
    """Drop the benchmark tables if present and let ``migrate --run-syncdb`` create them."""
    tables = connection.introspection.table_names()
    with connection.schema_editor() as editor:
        for model in models:
            if model._meta.db_table in tables:
                editor.delete_model(model)
    call_command("migrate", run_syncdb=True, verbosity=0)


def _sentence(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _body(rng: random.Random) -> str:
    target = rng.randint(450, 550)
    text = ""
    while len(text) < target:
        text += _sentence(rng, 8, 16).capitalize() + ". "
    return text[:target].rstrip()


def _article(rng: random.Random, index: int, start: datetime.datetime) -> Article:
    fields: dict[str, Any] = {
        "title": _sentence(rng, 4, 9).title(),
        "slug": f"article-{index:05d}-{rng.choice(WORDS)}",
        "body": _body(rng),
        "author_id": rng.randint(1, 200),
        "published": start + datetime.timedelta(seconds=rng.randint(0, 3 * 365 * 86400)),
        "views": rng.randint(0, 250_000),
        "score": rng.random() * 5,
        "price": decimal.Decimal(rng.randint(100, 99_999)) / 100,
        "is_public": rng.random() < 0.9,
        "tags": rng.sample(WORDS, rng.randint(1, 5)),
    }
    return Article(**fields)


def seed(rows: int) -> list[int]:
    """Insert ``rows`` deterministic articles; returns their pks."""
    rng = random.Random(20240601)
    start = datetime.datetime(2022, 1, 1, tzinfo=datetime.UTC)
    articles = [_article(rng, i, start) for i in range(rows)]
    Article.objects.bulk_create(articles, batch_size=500)
    return list(Article.objects.order_by("pk").values_list("pk", flat=True))


def seed_posts(rows: int) -> list[int]:
    """Insert ``rows`` posts with every counter at zero; returns their pks."""
    Post.objects.bulk_create([Post() for _ in range(rows)], batch_size=1000)
    return list(Post.objects.order_by("pk").values_list("pk", flat=True))


FIRST_NAMES = [
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Hedy",
    "John",
    "Ken",
    "Leslie",
    "Margaret",
    "Niklaus",
    "Radia",
    "Tony",
]

LAST_NAMES = [
    "Allen",
    "Backus",
    "Dijkstra",
    "Hamilton",
    "Hoare",
    "Hopper",
    "Kay",
    "Knuth",
    "Lamport",
    "Liskov",
    "Lovelace",
    "Perlman",
    "Ritchie",
    "Shannon",
    "Thompson",
    "Wirth",
]


def _member(rng: random.Random, index: int, start: datetime.datetime) -> Member:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    username = f"{first.lower()}.{last.lower()}{index}"
    joined = start + datetime.timedelta(seconds=rng.randint(0, 3 * 365 * 86400))
    seen = joined + datetime.timedelta(seconds=rng.randint(0, 365 * 86400))
    return Member(
        username=username,
        email=f"{username}@example.com",
        first_name=first,
        last_name=last,
        is_active=rng.random() < 0.95,
        is_staff=rng.random() < 0.05,
        is_superuser=rng.random() < 0.01,
        date_joined=joined,
        last_login=seen if rng.random() < 0.9 else None,
        logins=rng.randint(0, 5_000),
    )


def seed_members(rows: int) -> list[int]:
    """Insert ``rows`` deterministic members; returns their pks."""
    rng = random.Random(20240602)
    start = datetime.datetime(2021, 1, 1, tzinfo=datetime.UTC)
    Member.objects.bulk_create([_member(rng, i, start) for i in range(rows)], batch_size=500)
    return list(Member.objects.order_by("pk").values_list("pk", flat=True))


def clean_redis(patterns: Sequence[str] = OWN_PATTERNS) -> int:
    """Delete this benchmark's keys (SCAN, never KEYS); returns how many were deleted."""
    client = get_redis_connection("default")
    deleted = 0
    for pattern in patterns:
        batch: list[bytes] = []
        for key in client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) == 1000:
                deleted += client.delete(*batch)
                batch = []
        if batch:
            deleted += client.delete(*batch)
    return deleted


class StatementLog:
    """An execute wrapper: statements by kind, UPDATEs by table, and time spent in SQL."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self.updates: Counter[str] = Counter()
        self.seconds = 0.0

    def __call__(
        self,
        execute: Callable[..., Any],
        statement: str,
        params: Any,
        many: bool,
        context: dict[str, Any],
    ) -> Any:
        kind = statement.lstrip().split(None, 1)[0].upper()
        self.kinds[kind] += 1
        if kind == "UPDATE":
            match = re.match(r'\s*UPDATE\s+"?([\w$]+)', statement, re.IGNORECASE)
            self.updates[match.group(1) if match else "?"] += 1
        start = time.perf_counter()
        try:
            return execute(statement, params, many, context)
        finally:
            self.seconds += time.perf_counter() - start

    @property
    def total(self) -> int:
        return sum(self.kinds.values())
