"""What is timed and measured: cached reads, their hand-written floors, and the ORM."""

from __future__ import annotations

import datetime
import decimal
import pickle
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import msgpack
from django.db import connection
from django.test.utils import CaptureQueriesContext
from redis import Redis

from bench.benchapp.models import Article
from bench.timing import Variant
from django_cachestrat.plan import ModelPlan
from django_cachestrat.serializers import EPOCH, HEADER
from django_cachestrat.serializers import _decode_json as decode_json

DB_ALIAS = "default"


class Floor:
    """The least work a hit can do: GET the payload, unpack, run the decoders, ``from_db``."""

    def __init__(self, client: Redis, plan: ModelPlan) -> None:
        self.client = client
        self.decoders = plan.codec.decoders
        self.json_fields = plan.codec.json_fields  # stored as the database's text
        self.attnames = plan.codec.attnames

    @staticmethod
    def key(pk: int) -> str:
        return f"bench:floor:{pk}"

    def decode(self, data: bytes) -> Article:
        items = msgpack.unpackb(data)
        for index, decode in self.decoders:
            if items[index] is not None:
                items[index] = decode(items[index])
        for index, json_field in self.json_fields:
            if items[index] is not None:
                items[index] = decode_json(json_field, items[index])
        return Article.from_db(DB_ALIAS, self.attnames, items[HEADER:])

    def get(self, pk: int) -> Article:
        return self.decode(self.client.get(self.key(pk)))  # type: ignore[arg-type]

    def get_many(self, pks: Sequence[int]) -> dict[int, Article]:
        values = self.client.mget([self.key(pk) for pk in pks])
        # No cast() here: the floor must not pay for calls the cached path does not make.
        return {pk: self.decode(data) for pk, data in zip(pks, values, strict=True) if data}  # type: ignore[arg-type]


@dataclass
class Context:
    """Everything the cases share; ``rng`` makes the sampled pks repeatable."""

    client: Redis
    plan: ModelPlan
    pks: list[int]
    slugs: dict[int, str]
    floor: Floor
    rng: random.Random = field(default_factory=lambda: random.Random(7))

    def sample(self, count: int) -> list[int]:
        return self.rng.sample(self.pks, min(count, len(self.pks)))

    def draw(self, count: int) -> list[int]:
        return [self.rng.choice(self.pks) for _ in range(count)]


def warm(ctx: Context) -> None:
    """Fill every row and slug pointer through the cache, then copy payloads to floor keys."""
    Article.cached.get_many(ctx.pks)
    for slug in ctx.slugs.values():
        Article.cached.get(slug=slug)
    keys = [ctx.plan.keys.row(pk) for pk in ctx.pks]
    payloads = cast("list[bytes | None]", ctx.client.mget(keys))
    pipe = ctx.client.pipeline(transaction=False)
    for pk, key, data in zip(ctx.pks, keys, payloads, strict=True):
        if data is None:
            raise RuntimeError(f"row {pk} was not cached after warming ({key})")
        pipe.set(Floor.key(pk), data)
    pipe.execute()


def _values(obj: Any) -> list[Any]:
    return [getattr(obj, name) for name in type(obj).cached.plan.codec.attnames]


def verify(ctx: Context) -> None:
    """Refuse to time anything unless hits are hits and every variant reads the same row."""
    pk = ctx.pks[len(ctx.pks) // 2]
    with CaptureQueriesContext(connection) as queries:
        hit = Article.cached.get(pk=pk)
        by_slug = Article.cached.get(slug=ctx.slugs[pk])
        many = Article.cached.get_many(ctx.pks[:100])
    if len(queries):
        raise RuntimeError(f"cache hits ran {len(queries)} SQL queries: {queries[0]['sql']}")
    expected = _values(Article.objects.get(pk=pk))
    for name, obj in (("hit", hit), ("slug hit", by_slug), ("floor", ctx.floor.get(pk))):
        if _values(obj) != expected:
            raise RuntimeError(f"{name} read differs from the database row {pk}")
    if len(many) != 100 or len(ctx.floor.get_many(ctx.pks[:100])) != 100:
        raise RuntimeError("get_many or its floor did not return 100 rows")


def single_row(ctx: Context, calls: int) -> list[Variant]:
    """(a) One row by pk: cached hit, the floor, a slug hit and the ORM."""
    get = Article.cached.get
    return [
        Variant("hit", "Article.cached.get(pk=) — hit", lambda pk: get(pk=pk), ctx.draw(calls)),
        Variant(
            "floor", "floor: GET + unpackb + decoders + from_db", ctx.floor.get, ctx.draw(calls)
        ),
        Variant(
            "slug",
            "Article.cached.get(slug=) — hit (2 round trips)",
            lambda slug: get(slug=slug),
            [ctx.slugs[pk] for pk in ctx.draw(calls)],
        ),
        Variant(
            "orm",
            "Article.objects.get(pk=) — PostgreSQL",
            lambda pk: Article.objects.get(pk=pk),
            ctx.draw(calls),
        ),
        Variant(
            "stats",
            "statistics work of one hit alone (counters, timing, signal test)",
            _statistics_of_a_hit(ctx),
            ctx.draw(calls),
        ),
    ]


def _statistics_of_a_hit(ctx: Context) -> Any:
    """The exact statements a hit runs for statistics and the hit signal, nothing else."""
    import time

    from django_cachestrat import signals

    stats = ctx.plan.stats

    def work(pk: int) -> None:
        started = time.perf_counter()
        stats.hits += 1
        stats.hit_times.append((time.perf_counter() - started) * 1e6)
        if signals.hit.receivers:
            signals.hit.send(Article, pks=[pk])

    return work


def many_rows(ctx: Context, calls: int, size: int = 100) -> list[Variant]:
    """(b) ``size`` rows by pk: get_many, its floor, single gets, and ``filter(pk__in=)``."""
    get = Article.cached.get

    def batches() -> list[list[int]]:
        return [ctx.sample(size) for _ in range(calls)]

    return [
        Variant(
            "many",
            f"Article.cached.get_many({size} pks) — all hits",
            Article.cached.get_many,
            batches(),
        ),
        Variant(
            "many_floor",
            f"floor: MGET {size} keys + decode + from_db each",
            ctx.floor.get_many,
            batches(),
        ),
        Variant(
            "singles",
            f"{size} x Article.cached.get(pk=)",
            lambda pks: [get(pk=pk) for pk in pks],
            batches(),
        ),
        Variant(
            "many_orm",
            f"list(Article.objects.filter(pk__in={size} pks))",
            lambda pks: list(Article.objects.filter(pk__in=pks)),
            batches(),
        ),
    ]


def _invalidate(pks: Sequence[int]) -> None:
    Article.cached.invalidate(*pks)


class NaiveMiss:
    """Hand-written cache-aside: ``GET``; on a miss ``SELECT`` and ``SET`` with a TTL.

    The payload is a plain msgpack list of the values (see :func:`plain_value`), sent through
    the same redis-py client as ours; the TTL is the app's ``TIMEOUT``.
    """

    def __init__(self, client: Redis, ttl: int, name: str = "miss") -> None:
        self.client = client
        self.ttl = ttl
        self.name = name  # variants drawing the same pks must not fill each other's keys

    def key(self, pk: int) -> str:
        return f"naive:{self.name}:{pk}"

    def get(self, pk: int, extra_trip: bool = False) -> Any:
        key = self.key(pk)
        data = self.client.get(key)
        if data is not None:
            return data
        if extra_trip:  # one more round trip where ours takes its lease
            self.client.ping()
        obj = Article.objects.get(pk=pk)
        self.client.set(key, msgpack.packb([plain_value(v) for v in _values(obj)]), ex=self.ttl)
        return obj

    def drop(self, pks: Sequence[int]) -> None:
        self.client.delete(*[self.key(pk) for pk in pks])


def cache_miss(ctx: Context, calls: int) -> list[Variant]:
    """(d) A miss after ``invalidate``: against a naive cache-aside miss, one Redis round trip
    (``PING``) through the same client, and the ORM get."""
    get = Article.cached.get
    naive = NaiveMiss(ctx.client, int(ctx.plan.timeout))
    naive_trip = NaiveMiss(ctx.client, int(ctx.plan.timeout), "trip")
    ping = ctx.client.ping
    return [
        Variant(
            "miss",
            "Article.cached.get(pk=) — miss after invalidate (lease + fill)",
            lambda pk: get(pk=pk),
            ctx.sample(calls),
            prepare=_invalidate,
        ),
        Variant(
            "naive_miss",
            "naive miss: GET, SELECT (objects.get), SET with a TTL",
            naive.get,
            ctx.sample(calls),
            prepare=naive.drop,
        ),
        Variant(
            "naive_trip",
            "naive miss + 1 round trip: GET, PING, SELECT, SET",
            lambda pk: naive_trip.get(pk, extra_trip=True),
            ctx.sample(calls),
            prepare=naive_trip.drop,
        ),
        Variant("ping", "one Redis round trip alone: PING", lambda _pk: ping(), ctx.sample(calls)),
        Variant(
            "miss_orm",
            "Article.objects.get(pk=) — PostgreSQL",
            lambda pk: Article.objects.get(pk=pk),
            ctx.sample(calls),
        ),
    ]


def plain_value(value: Any) -> Any:
    """The simplest compact msgpack form: ints for datetimes, str for decimals, uuid bytes."""
    if isinstance(value, datetime.datetime):
        delta = value - EPOCH
        return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, uuid.UUID):
        return value.bytes
    return value  # str, int, float, bool, and the JSON list packed natively


@dataclass(frozen=True)
class Sizes:
    """Per-row Redis ``MEMORY USAGE`` (key included) and value length, for each encoding."""

    usage: dict[str, list[int]]
    length: dict[str, list[int]]


ENCODINGS = ("ours", "plain", "pickle")


def _store_encodings(client: Redis, model: Any) -> dict[str, list[str]]:
    """Our cached row keys, and a plain-msgpack and a pickle key for the same rows."""
    keys: dict[str, list[str]] = {name: [] for name in ENCODINGS}
    pipe = client.pipeline(transaction=False)
    for obj in model.objects.order_by("pk"):
        plain_key, pickle_key = f"bench:plain:{obj.pk}", f"bench:pickle:{obj.pk}"
        pipe.set(plain_key, msgpack.packb([plain_value(v) for v in _values(obj)]))
        pipe.set(pickle_key, pickle.dumps(obj))
        keys["ours"].append(model.cached.plan.keys.row(obj.pk))
        keys["plain"].append(plain_key)
        keys["pickle"].append(pickle_key)
    pipe.execute()
    return keys


def _per_key(client: Redis, keys: list[str], command: str) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        if command == "usage":
            pipe.memory_usage(key, samples=0)
        else:
            pipe.strlen(key)
    return [int(value) for value in pipe.execute()]


def sizes(client: Redis, model: Any) -> Sizes:
    """(c) Bytes per cached row of ``model``: our payload, a plain msgpack list of the same
    values, and a pickled instance. Every row is filled through the cache first; the
    comparison keys are deleted afterwards, so each row shape reuses the same key names."""
    pks = list(model.objects.values_list("pk", flat=True))
    if len(model.cached.get_many(pks)) != len(pks):
        raise RuntimeError(f"{model.__name__}: not every row was returned by get_many")
    keys = _store_encodings(client, model)
    if client.exists(*keys["ours"]) != len(keys["ours"]):
        raise RuntimeError(f"{model.__name__}: some rows are not cached")
    try:
        return Sizes(
            usage={name: _per_key(client, keys[name], "usage") for name in ENCODINGS},
            length={name: _per_key(client, keys[name], "strlen") for name in ENCODINGS},
        )
    finally:
        client.delete(*keys["plain"], *keys["pickle"])
