"""What the cache holds for one row, beside the database row: the data of the admin inspector."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from django.db import models, router

from .client import topology
from .failopen import fail_open
from .invalidation import invalidate_pks
from .keys import KeySpace, stripe_member
from .plan import ModelPlan, plan_for
from .serializers import ABSENT, ROW, CorruptPayload, Payload, generation_tag
from .transactions import scope_tag

__all__ = [
    "STATE_TEXT",
    "FieldState",
    "LookupState",
    "RowReport",
    "State",
    "inspect_row",
    "invalidate_rows",
]

#: What a key holds, as a read would take it: "row" and "absent" are served from the cache;
#: every other state reads as a miss.
State = Literal["missing", "row", "absent", "pointer", "old_generation", "old_absence", "corrupt"]

STATE_TEXT: dict[State, str] = {
    "missing": "Not cached: the next read fills it from the database.",
    "row": "Cached row, served to reads.",
    "absent": "Cached as “no such row”, served to reads.",
    "pointer": "Pointer to a row, served to reads.",
    "old_generation": "Filled before the model was last flushed: reads as a miss.",
    "old_absence": "“No such row” from before an insert: reads as a miss.",
    "corrupt": (
        "Unreadable (corrupt, or written by a release with another schema): reads as a miss, "
        "and the read removes it."
    ),
}

#: Characters of a value shown on the page.
SHOWN_CHARS = 200


@dataclasses.dataclass
class FieldState:
    """One field of the row: the cached value beside the database value."""

    name: str
    cached: str
    database: str
    differs: bool
    pending: int = 0  # write-behind increments not yet claimed by a flush
    in_flight: int = 0  # increments of a claimed batch, applied or about to be


@dataclasses.dataclass
class LookupState:
    """A lookup key (unique field value → pk) of the row."""

    field: str
    value: str
    key: str
    state: State
    points_to: str | None
    ttl_ms: int | None
    lease_ttl_ms: int | None

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]


@dataclasses.dataclass
class RowReport:
    """Everything the cache holds for one row, and whether it agrees with the database."""

    label: str
    pk: Any
    key: str
    state: State
    ttl_ms: int | None  # None: no such key; -1: no expiry
    lease_ttl_ms: int | None  # None: no lease held
    in_database: bool
    generation: str
    fields: list[FieldState] = dataclasses.field(default_factory=list)
    lookups: list[LookupState] = dataclasses.field(default_factory=list)
    recompute_us: int | None = None

    @property
    def state_text(self) -> str:
        return STATE_TEXT[self.state]

    @property
    def is_cached(self) -> bool:
        """Whether a read is served from the cache (a row, or a "no such row" marker)."""
        return self.state in ("row", "absent")

    @property
    def in_sync(self) -> bool | None:
        """Whether what a read would be served agrees with the database; None: nothing is
        served from the cache, so the next read goes to the database."""
        if self.state == "row":
            return self.in_database and not any(f.differs for f in self.fields)
        if self.state == "absent":
            return not self.in_database
        return None

    @property
    def differing(self) -> list[str]:
        return [f.name for f in self.fields if f.differs]


def _ttl(value: int) -> int | None:
    return None if value == -2 else value  # PTTL: -2 no key, -1 no expiry


def _state(
    plan: ModelPlan, data: bytes | None, row_gen: bytes, absent_gen: bytes
) -> tuple[State, Payload | None]:
    """A value as a read would judge it, with its decoded payload."""
    if data is None:
        return "missing", None
    try:
        payload = plan.codec.load(data)
    except CorruptPayload:
        return "corrupt", None
    if payload.kind == ABSENT:
        current = payload.generation == b"%s:%s" % (row_gen, absent_gen)
        return ("absent" if current else "old_absence"), payload
    if payload.generation != row_gen:
        return "old_generation", payload
    return ("row" if payload.kind == ROW else "pointer"), payload


@fail_open
def _run(commands: Sequence[Sequence[Any]]) -> list[Any]:
    pipe = topology().pipeline()
    for command in commands:
        pipe.execute_command(*command)
    return list(pipe.execute())


def _show(value: Any) -> str:
    if isinstance(value, memoryview):
        value = bytes(value)
    text = repr(value) if isinstance(value, bytes) else str(value)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _same(cached: Any, database: Any) -> bool:
    if isinstance(database, memoryview):
        database = bytes(database)
    return bool(cached == database)


def inspect_row(model: type[models.Model], pk: Any) -> RowReport:
    """Read the row's cache entries and its database row; Redis errors propagate
    (:class:`~django_cachestrat.breaker.Unavailable` when the breaker is open)."""
    plan = plan_for(model._meta.concrete_model or model)
    using = router.db_for_read(plan.model)
    keys = plan.space(using)  # the keys of the database a read would use
    key = keys.row(pk)
    stripe = plan.keys.stripe(plan.keys.stripe_of(pk, plan.stripes))  # counters: per model
    members = [stripe_member(name, pk) for name in plan.options.counters]
    commands: list[Sequence[Any]] = [
        ("GET", keys.generation),
        ("GET", keys.absent),
        ("GET", key),
        ("PTTL", key),
        ("PTTL", keys.lease(key)),
    ]
    if members:
        commands += [("HMGET", stripe.pending, *members), ("HMGET", stripe.claimed, *members)]
    row_gen, absent_gen, data, ttl, lease_ttl, *counts = _run(commands)
    # Inside a test case, what the test filled carries its scope (as a read would see it).
    scope = scope_tag(using, detect=True)
    stored_gen, absent_gen = row_gen or b"", absent_gen or b""
    row_gen = generation_tag(stored_gen) + scope  # as reads.Generations tags payloads
    state, payload = _state(plan, data, row_gen, absent_gen)
    values = _database_values(plan, pk)
    report = RowReport(
        label=keys.label,
        pk=pk,
        key=key,
        state=state,
        ttl_ms=_ttl(ttl),
        lease_ttl_ms=_ttl(lease_ttl),
        in_database=values is not None,
        generation=stored_gen.decode(errors="replace") or "0",
        recompute_us=payload.recompute_us if payload is not None else None,
    )
    cached = payload.values if payload is not None and payload.kind == ROW else None
    report.fields = _fields(plan, cached, values, counts)
    report.lookups = _lookups(plan, keys, (values, cached), (row_gen, absent_gen))
    return report


def _database_values(plan: ModelPlan, pk: Any) -> list[Any] | None:
    rows = plan.rows(router.db_for_read(plan.model))
    row = rows.filter(pk=pk).values_list(*plan.codec.attnames).first()
    return list(row) if row is not None else None


def _fields(
    plan: ModelPlan, cached: list[Any] | None, database: list[Any] | None, counts: list[Any]
) -> list[FieldState]:
    if cached is None and database is None:
        return []
    pending, in_flight = (counts or [[], []])[:2]
    counters = list(plan.options.counters)
    rows = []
    for i, name in enumerate(plan.codec.attnames):
        mine = cached[i] if cached is not None else None
        theirs = database[i] if database is not None else None
        state = FieldState(
            name=name,
            cached=_show(mine) if cached is not None else "",
            database=_show(theirs) if database is not None else "",
            differs=cached is not None and database is not None and not _same(mine, theirs),
        )
        if name in counters:
            j = counters.index(name)
            state.pending, state.in_flight = int(pending[j] or 0), int(in_flight[j] or 0)
        rows.append(state)
    return rows


def _lookups(
    plan: ModelPlan,
    space: KeySpace,
    sources: Sequence[list[Any] | None],
    gens: tuple[bytes, bytes],
) -> list[LookupState]:
    """The lookup keys of the row's current value, and of the cached value if it differs."""
    indexes = {name: plan.codec.attnames.index(f.attname) for name, f in plan.lookup_fields.items()}
    pairs = [(name, row[i]) for name, i in indexes.items() for row in sources if row is not None]
    wanted = [(name, value) for name, value in dict.fromkeys(pairs) if value is not None]
    if not wanted:
        return []
    keys = [space.lookup(name, value) for name, value in wanted]
    out = _run([c for k in keys for c in (("GET", k), ("PTTL", k), ("PTTL", space.lease(k)))])
    found = []
    for i, ((name, value), key) in enumerate(zip(wanted, keys, strict=True)):
        data, ttl, lease_ttl = out[3 * i : 3 * i + 3]
        state, payload = _state(plan, data, *gens)
        target = payload.values[:1] if payload is not None and state == "pointer" else []
        points_to = _show(target[0]) if target else None
        found.append(
            LookupState(name, _show(value), key, state, points_to, _ttl(ttl), _ttl(lease_ttl))
        )
    return found


def invalidate_rows(model: type[models.Model], pks: Iterable[Any]) -> int:
    """Drop rows and the lookup keys of their current values; returns how many rows."""
    plan = plan_for(model._meta.concrete_model or model)
    pks = list(pks)
    names = list(plan.lookup_fields)
    values: dict[str, list[Any]] = {name: [] for name in names}
    if names:
        rows = plan.rows(router.db_for_read(plan.model)).filter(pk__in=pks).values_list(*names)
        for row in rows:
            for name, value in zip(names, row, strict=True):
                values[name].append(value)
    invalidate_pks(plan.model, pks, values=values)
    return len(pks)
