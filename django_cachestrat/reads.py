"""Cache-aside reads: a lean hit path, and leased fills so no stale row is ever stored."""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import models, router

from . import counter_reads, replicas, requestlog, signals, tracing
from .breaker import Unavailable
from .client import connection, topology
from .failopen import fail_open
from .fills import fill_one
from .keys import KeySpace
from .leases import MISSING, Ahead, Entry, Loaded, Miss, leased
from .pending import new_generation
from .plan import ModelPlan
from .serializers import ABSENT, ROW, CorruptPayload, Payload, generation_tag
from .transactions import has_inserted, is_touched, scope_tag

__all__ = ["Generations", "get", "get_many", "refill"]


@fail_open
def _mget(keys: list[str]) -> list[bytes | None]:
    return topology().mget(keys)


@fail_open
def _mget_home(generation: str, key: str) -> tuple[str, list[bytes | None]]:
    """One key and its generation, read where the topology keeps it (``Cluster.home``)."""
    shape = topology()
    home = shape.home(generation, key)
    return home, shape.mget([home, key])


@fail_open
def _establish(key: str, copy: str | None = None) -> bytes:
    """The generation stored under ``key``, given a new random value if it has none; with
    ``copy`` (a cluster's copy of it), the value of that copy, which takes the generation's
    value if it has none, so the copies and the generation agree."""
    client = connection()
    value = _set_or_get(client, key, new_generation().encode())
    return value if copy is None else _set_or_get(client, copy, value)


def _set_or_get(client: Any, key: str, token: bytes) -> bytes:
    # SET NX, then GET if it was taken (SET NX GET needs Redis 7). Between the two the key
    # may change or go: a fill then carries a value no reader holds, which is only a miss.
    if client.set(key, token, nx=True):
        return token
    existing = client.get(key)
    return bytes(existing) if existing is not None else token


#: The row tag while the generation key is missing: no payload carries it, and nothing is
#: stored under it (see ``Generations.ready``).
UNSET = b"\x00unset"


def row_tag(stored: bytes | None, scope: bytes) -> bytes:
    """The tag a row payload must carry under the stored row generation and a test scope
    (:data:`UNSET` while the generation key is missing)."""
    return generation_tag(stored) + scope if stored else UNSET


class Generations:
    """The model's generations as read with the value.

    A flush gives the row generation a new random value; it is read in the same MGET as
    every value. An insert the app cannot name does the same to the absence generation,
    which only a cached "no such row" needs: it is fetched on first use, so the hit path
    reads two keys, not three.

    NOTE: a missing generation key (never set, or evicted) matches no payload, and a fill
    first gives it a random value with SET NX: so a key that Redis evicts never comes back
    with a value older rows carry (invariant 10), whatever the eviction policy.
    """

    __slots__ = ("_absent", "_scope", "_stored", "home", "keys", "row")

    def __init__(
        self, keys: KeySpace, row: bytes | None, scope: bytes = b"", home: str = ""
    ) -> None:
        self.keys = keys
        self.home = home or keys.generation  # where the row generation was read
        self._stored = row or b""
        # Inside a test case the scope names the test's block (see transactions.scope_tag).
        self._scope = scope
        self.row = UNSET
        self._absent: bytes | None = None
        self._retag()

    @property
    def ready(self) -> bool:
        """Whether the generation is in Redis, so fills may be stored under it."""
        return bool(self._stored)

    def rescope(self, scope: bytes) -> None:
        """Tag what is filled from here on with the connection's test scope."""
        if scope != self._scope:
            self._scope = scope
            self._retag()

    def establish(self) -> None:
        """Before a fill: make sure the row generation is in Redis (see the class note)."""
        if not self._stored:
            with contextlib.suppress(Unavailable):
                home = self.home if self.home != self.keys.generation else None
                self._stored = _establish(self.keys.generation, home)
                self._retag()

    def _retag(self) -> None:
        """The tag payloads must carry: the stored generation and the test scope."""
        self.row = row_tag(self._stored, self._scope)
        self._absent = None

    def absent_tag(self) -> bytes:
        """``row:absent``, the tag a cached absence must carry to be believed."""
        if self._absent is None:
            absent = _mget([self.keys.absent])[0] or _establish(self.keys.absent)
            self._absent = b"%s:%s" % (self.row, absent)
        return self._absent

    @property
    def absent_read(self) -> bytes | None:
        """:meth:`absent_tag` if it was read already (before a fill's database read)."""
        return self._absent

    def ahead(self) -> Ahead | None:
        """The absence generation, to read with a miss's leases unless it is known."""
        return None if self._absent is not None else Ahead(self.keys.absent, self._take_absent)

    def _take_absent(self, value: bytes | None) -> None:
        with contextlib.suppress(Unavailable):  # unknown, a missing row is then not cached
            absent = value or _establish(self.keys.absent)
            self._absent = b"%s:%s" % (self.row, absent)


def _read(space: KeySpace, keys: list[str], using: str) -> tuple[Generations, list[bytes | None]]:
    if len(keys) == 1:  # a one-row hit: on a cluster, from one node (Cluster.home)
        home, (generation, *values) = _mget_home(space.generation, keys[0])
        if generation is None and home != space.generation:
            # A copy not made yet (or evicted): it takes the generation's value, so rows
            # filled under it are not misses. Once per node and model, not per hit.
            generation = _establish(space.generation, home)
        return Generations(space, generation, scope_tag(using), home), values
    generation, *values = _mget([space.generation, *keys])
    return Generations(space, generation, scope_tag(using)), values


def is_current_absence(payload: Payload, generations: Generations) -> bool:
    try:
        return bool(payload.generation == generations.absent_tag())
    except Unavailable:
        return False


def decode_row(
    plan: ModelPlan, data: bytes, generations: Generations, using: str, refresh: bool = True
) -> Any:
    """A model instance, :data:`MISSING`, or None when the payload is unusable."""
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return None
    if payload.kind == ROW:
        if payload.generation != generations.row:
            return None
        instance = plan.model.from_db(using, plan.codec.attnames, payload.values)
        if refresh and plan.early_refresh and is_refresh_due(payload, plan.early_refresh):
            return _refresh(plan, instance, generations, using)
        return instance
    if payload.kind == ABSENT and is_current_absence(payload, generations):
        return MISSING
    return None


def is_refresh_due(payload: Payload, beta: float) -> bool:
    """XFetch (Vattani et al., VLDB 2015): refresh before expiry with a probability that
    rises as expiry nears, scaled by how long the value took to compute."""
    if not payload.expires_ms:
        return False
    left_ms = payload.expires_ms - time.time() * 1000
    scale_ms = payload.recompute_us / 1000 * beta
    if left_ms > 40 * scale_ms:  # the chance is below e^-40: skip the draw
        return False
    return bool(scale_ms * -math.log(1.0 - random.random()) >= left_ms)


def get(plan: ModelPlan, pk: Any, using: str | None = None) -> models.Model:
    """The row with this pk, from Redis when possible; raises ``DoesNotExist``. ``using``:
    the database to read, by default the router's."""
    started = time.perf_counter()
    pk = plan.clean_pk(pk)
    if pk is None:  # no row has a NULL pk, and None names no key
        raise plan.does_not_exist(_not_found(plan, "pk", pk))
    if plan.options.counters:  # rows with write-behind counters take the batch path
        return _one(plan, pk, get_many(plan, [pk], using))
    using = using or router.db_for_read(plan.model)
    label = plan.keys.label
    if plan.pk_inexact or is_touched(label, pk):  # pk_inexact: see plan.has_collation
        return _db_get(plan, pk, using)
    space = plan.space(using)
    key = space.row(pk)
    try:
        generations, (data,) = _read(space, [key], using)
    except Unavailable:
        return _db_get(plan, pk, using)
    if data is not None:
        found = decode_row(plan, data, generations, using)
        if found is MISSING and not has_inserted(label):
            raise plan.does_not_exist(_not_found(plan, "pk", pk))
        if found is not None and found is not MISSING:
            _count(plan, [pk], (), started)
            return found  # type: ignore[no-any-return]
    _count(plan, (), [pk], started)
    miss = Miss(pk, key, data or b"")
    rows: dict[Any, models.Model] = _resolve_rows(plan, [miss], generations, using)
    if pk not in rows:
        raise plan.does_not_exist(_not_found(plan, "pk", pk))
    return rows[pk]


def get_many(
    plan: ModelPlan, pks: Iterable[Any], using: str | None = None
) -> dict[Any, models.Model]:
    """``{pk: instance}`` for the rows that exist, in one Redis round trip when all hit."""
    started = time.perf_counter()
    clean = list(dict.fromkeys(plan.clean_pk(pk) for pk in pks))
    clean = [pk for pk in clean if pk is not None]  # no row has a NULL pk
    using = using or router.db_for_read(plan.model)
    result = _rows(plan, clean, started, using)
    if plan.options.counters:
        counter_reads.overlay(plan, result[0], result[1], using)
    return result[0]


def _rows(
    plan: ModelPlan, clean: list[Any], started: float, using: str
) -> tuple[dict[Any, models.Model], dict[int, Any]]:
    """The rows, and the write-behind stripe versions read in the same MGET."""
    label = plan.keys.label
    result: dict[Any, models.Model] = {}
    bypass = set(clean) if plan.pk_inexact else {pk for pk in clean if is_touched(label, pk)}
    if bypass:
        result.update(_db_rows(plan, list(bypass), using))
        clean = [pk for pk in clean if pk not in bypass]
    if not clean:
        return result, {}
    space = plan.space(using)
    keys = [space.row(pk) for pk in clean]
    versions = counter_reads.version_keys(plan, clean, using) if plan.options.counters else {}
    try:
        generations, values = _read(space, keys + list(versions.values()), using)
    except Unavailable:
        result.update(_db_rows(plan, clean, using))
        return result, {}
    seen = dict(zip(versions, values[len(keys) :], strict=True))
    trust_absent = not has_inserted(label)
    misses = []
    for pk, key, data in zip(clean, keys, values[: len(keys)], strict=True):
        found = decode_row(plan, data, generations, using) if data is not None else None
        if found is None or (found is MISSING and not trust_absent):
            misses.append(Miss(pk, key, data or b""))
        elif found is not MISSING:
            result[pk] = found
    _count(plan, [pk for pk in clean if pk in result], [m.ident for m in misses], started)
    if misses:
        result.update(_resolve_rows(plan, misses, generations, using))
    return result, seen


def _count(plan: ModelPlan, hits: Sequence[Any], misses: Sequence[Any], started: float) -> None:
    stats = plan.stats
    stats.hits += len(hits)
    stats.misses += len(misses)
    if hits and not misses:  # the time per row of an all-hit read
        stats.queries_saved += 1
        stats.hit_times.append((time.perf_counter() - started) * 1e6 / len(hits))
    if (log := requestlog.active()) is not None:  # a debug panel is recording
        log.reads(plan.keys.label, hits, misses)
    if hits and signals.hit.receivers:
        signals.hit.send(plan.model, pks=hits)
    if misses and signals.miss.receivers:
        signals.miss.send(plan.model, pks=misses)


def _one(plan: ModelPlan, pk: Any, rows: dict[Any, models.Model]) -> models.Model:
    try:
        return rows[pk]
    except KeyError:
        raise plan.does_not_exist(_not_found(plan, "pk", pk)) from None


def _refresh(plan: ModelPlan, instance: Any, generations: Generations, using: str) -> Any:
    """Recompute a hot row before it expires; everyone else keeps reading the cached one."""
    miss = Miss(instance.pk, generations.keys.row(instance.pk), refresh=True)
    fresh = _resolve_rows(plan, [miss], generations, using, wait=False)
    if instance.pk not in fresh:  # another reader holds the lease and is refreshing it
        return instance
    plan.stats.early_refreshes += 1
    return fresh[instance.pk]


def refill(plan: ModelPlan, pks: Iterable[Any], using: str | None = None) -> int:
    """Fill the rows that are not cached, or cached unusably (flushed, corrupt, a stale
    absence), from one database read under leases, without waiting for other holders or
    counting hits and misses; return how many rows were stored. Write-through and
    ``cachestrat_warm`` use it; ``using``: the database to read, by default the router's."""
    using = using or router.db_for_read(plan.model)
    clean = list(dict.fromkeys(plan.clean_pk(pk) for pk in pks))
    space = plan.space(using)
    keys = [space.row(pk) for pk in clean]
    try:
        generations, values = _read(space, keys, using)
    except Unavailable:
        return 0
    misses = []
    for pk, key, data in zip(clean, keys, values, strict=True):
        found = None if data is None else decode_row(plan, data, generations, using, False)
        if found is None or found is MISSING:
            misses.append(Miss(pk, key, data or b""))  # lease.lua drops the unusable value
    if not misses:
        return 0
    stored: list[int] = []
    _resolve_rows(plan, misses, generations, using, wait=False, stored=stored)
    return sum(stored)


def _resolve_rows(
    plan: ModelPlan,
    misses: list[Miss],
    generations: Generations,
    using: str,
    wait: bool = True,
    stored: list[int] | None = None,
) -> Any:
    generations.rescope(scope_tag(using, detect=True))
    generations.establish()
    # The absence generation must be read before the database (see _absent_entry): it
    # rides in the first lease round trip instead of a round trip of its own.
    ahead = generations.ahead()

    def decode(data: bytes) -> Any:
        return decode_row(plan, data, generations, using, refresh=False)

    def load(pks: list[Any]) -> Loaded:
        start = time.perf_counter()
        if using in plan.replicas:  # a replica may lag: see replicas.py
            rows = replicas.fill_rows(plan, generations.keys, pks, using)
        elif len(pks) != 1 or (rows := fill_one(plan, pks[0], using)) is None:  # type: ignore[assignment]
            rows = {obj.pk: obj for obj in plan.fill_rows(using, pks)}
        spent_us = int((time.perf_counter() - start) * 1_000_000)
        plan.stats.fill_time_us += spent_us
        per_row_us = spent_us // len(pks)  # what recomputing one row costs, for XFetch
        plan.stats.fill_times.append(spent_us / len(pks))
        return {pk: _row_entry(plan, rows.get(pk, MISSING), generations, per_row_us) for pk in pks}

    started = time.perf_counter()
    with tracing.span("fill", plan.keys.label, {"cachestrat.rows": len(misses)}):
        found = leased(plan, misses, decode, load, using, wait, stored, ahead)
    if wait:  # a reader's miss (not a refresh or a refill): lease to row, per row
        plan.stats.miss_times.append((time.perf_counter() - started) * 1e6 / len(misses))
    return found


def _read_absent_generation(generations: Generations) -> None:
    # Read before the database: an insert committed in between bumps it, so a cached
    # "no such row" filled from the older read is never believed.
    with contextlib.suppress(Unavailable):
        generations.absent_tag()


def _absent_entry(plan: ModelPlan, generations: Generations) -> Entry:
    # NOTE: only an absence generation read before the database read may tag a cached
    # "no such row": an insert committed in between bumps it, so the marker is void.
    tag = generations.absent_read
    if plan.negative_timeout <= 0 or not generations.ready or tag is None:
        return Entry(MISSING, None)
    payload = plan.codec.dump_marker(ABSENT, tag)
    return Entry(MISSING, payload, plan.ttl_ms(plan.negative_timeout))


def _row_entry(plan: ModelPlan, row: Any, generations: Generations, spent_us: int) -> Entry:
    if row is MISSING:
        return _absent_entry(plan, generations)
    if not generations.ready:
        return Entry(row, None)  # no generation in Redis to tag it with: serve it only
    ttl_ms = plan.ttl_ms()
    expires_ms = int(time.time() * 1000) + ttl_ms
    try:
        payload = plan.codec.dump_row(row, generations.row, spent_us, expires_ms)
    except (TypeError, ValueError, OverflowError):
        return Entry(row, None)  # a value msgpack cannot hold: serve it, do not cache it
    return Entry(row, payload, ttl_ms)


def _db_rows(plan: ModelPlan, pks: list[Any], using: str) -> dict[Any, models.Model]:
    # No ordering: the rows are matched by pk (and Meta.ordering would cost a sort).
    return {obj.pk: obj for obj in plan.rows(using).filter(pk__in=pks).order_by()}


def _db_get(plan: ModelPlan, pk: Any, using: str) -> models.Model:
    return plan.rows(using).get(pk=pk)


def _not_found(plan: ModelPlan, name: str, value: Any) -> str:
    return f"{plan.model._meta.object_name} matching {name}={value!r} does not exist."
