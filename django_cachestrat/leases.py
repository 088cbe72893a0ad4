"""Leases (Nishtala et al., NSDI 2013, §3.2): one filler per key, stale fills dropped."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from . import requestlog
from .breaker import Unavailable
from .client import connection
from .failopen import fail_open
from .plan import ModelPlan
from .scripts import Call, scripts
from .transactions import can_fill

__all__ = ["MISSING", "Ahead", "Entry", "Loaded", "Miss", "leased"]

#: A decoded "this row does not exist" marker (a miss sentinel, never None).
MISSING: Any = object()


class Miss(NamedTuple):
    ident: Any  # the pk, or the lookup value
    key: str
    discard: bytes = b""  # an unusable value seen under the key, removed with the lease
    refresh: bool = False  # take the lease although a value is cached (early refresh)


class Entry(NamedTuple):
    """What a load read for one ident: the value for the caller, and what to store."""

    value: Any
    payload: bytes | None  # None: store nothing, give the lease back
    ttl_ms: int = 0


Loaded = dict[Any, Entry]
Load = Callable[[list[Any]], Loaded]


class Ahead(NamedTuple):
    """A key to read in the first lease round trip, so before any database read (the
    absence generation): ``take`` gets its value (None if the key is missing)."""

    key: str
    take: Callable[[bytes | None], None]


def _run(calls: list[Call], reads: Sequence[str] = ()) -> list[Any]:
    # One call on its own is sent as a plain EVALSHA: a pipeline object costs more Python
    # than the call itself (this is the single-row miss path).
    if len(calls) == 1 and not reads:
        script, keys, args = calls[0]
        return [script(connection(), keys, args)]
    return scripts.run_many(connection(), calls, reads)


@fail_open
def _leases(plan: ModelPlan, misses: Sequence[Miss], reads: Sequence[str] = ()) -> list[Any]:
    """The values of ``reads``, then per miss: the token if its lease is ours, a cached
    value, or 0."""
    token = os.urandom(8).hex()
    calls: list[Call] = []
    for m in misses:
        args = (token, plan.lease_ms, m.discard, int(m.refresh))
        calls.append((scripts.lease, (m.key, plan.keys.lease(m.key)), args))
    outcomes = _run(calls, reads)
    values = outcomes[: len(reads)]
    return [*values, *((token if out == 1 else out) for out in outcomes[len(reads) :])]


@fail_open
def _store(plan: ModelPlan, stores: Sequence[tuple[Miss, str, Entry]]) -> list[Any]:
    calls: list[Call] = []
    for miss, token, entry in stores:
        lease = plan.keys.lease(miss.key)
        if entry.payload is None:
            calls.append((scripts.release, (lease,), (token,)))
        else:
            calls.append((scripts.fill, (miss.key, lease), (token, entry.payload, entry.ttl_ms)))
    return _run(calls)


def leased(
    plan: ModelPlan,
    misses: list[Miss],
    decode: Callable[[bytes], Any],
    load: Load,
    using: str,
    wait: bool = True,
    stored: list[int] | None = None,
    ahead: Ahead | None = None,
) -> dict[Any, Any]:
    """Resolve misses under leases.

    The holder of a key's lease reads the database and fills; the others wait, with a
    bounded back-off, for that fill, then read the database without filling. Absent rows
    are left out of the result. With ``wait=False`` (warming, early refresh) a key whose
    lease is held elsewhere is skipped. ``ahead`` is read with the first leases.
    """
    found: dict[Any, Any] = {}
    if not can_fill(using, plan.keys.label):
        misses_left = misses  # nothing is stored, so nothing needs reading ahead
    else:
        misses_left = _lease_rounds(plan, misses, decode, load, found, wait, stored, ahead)
    if misses_left and wait:
        plan.stats.db_fallbacks += len(misses_left)
        loaded = load([m.ident for m in misses_left])
        found.update((k, entry.value) for k, entry in loaded.items())
    return {k: v for k, v in found.items() if v is not MISSING}


def _lease_rounds(
    plan: ModelPlan,
    misses: list[Miss],
    decode: Callable[[bytes], Any],
    load: Load,
    found: dict[Any, Any],
    wait: bool,
    stored: list[int] | None,
    ahead: Ahead | None,
) -> list[Miss]:
    deadline = time.monotonic() + (plan.lease_wait if wait else 0.0)
    delay = 0.002
    while misses:
        reads = (ahead.key,) if ahead is not None else ()
        try:
            outcomes = _leases(plan, misses, reads)
        except Unavailable:
            return misses
        if ahead is not None:
            ahead.take(outcomes[0])
            outcomes, ahead = outcomes[1:], None
        mine: list[tuple[Miss, str]] = []
        waiting: list[Miss] = []
        for miss, out in zip(misses, outcomes, strict=True):
            if isinstance(out, str):
                mine.append((miss, out))
            elif isinstance(out, bytes) and (value := decode(out)) is not None:
                found[miss.ident] = value
            elif not miss.refresh:
                waiting.append(miss._replace(discard=out if isinstance(out, bytes) else b""))
        if mine:
            _load_and_fill(plan, mine, load, found, stored)
        misses = waiting
        remaining = deadline - time.monotonic()
        if not misses or remaining <= 0:
            break
        plan.stats.lease_waits += len(misses)
        if (log := requestlog.active()) is not None:  # a debug panel is recording
            log.lease_waits(plan.keys.label, len(misses))
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return misses


def _load_and_fill(
    plan: ModelPlan,
    mine: list[tuple[Miss, str]],
    load: Load,
    found: dict[Any, Any],
    stored: list[int] | None,
) -> None:
    try:
        loaded = load([m.ident for m, _ in mine])
    except BaseException:
        _give_back(plan, [(m, token, Entry(None, None)) for m, token in mine])
        raise
    stores = []
    for miss, token in mine:
        entry = loaded[miss.ident]
        found[miss.ident] = entry.value
        stores.append((miss, token, entry))
    outcomes = _give_back(plan, stores)
    filled = sum(1 for out in outcomes if out == 1)
    plan.stats.fills += filled
    if stored is not None:  # this call's own count (the statistics are the process's)
        stored.append(filled)
    lost = sum(
        1 for (_, _, entry), out in zip(stores, outcomes, strict=True) if entry.payload and out == 0
    )
    plan.stats.rejected_fills += lost
    if lost and (log := requestlog.active()) is not None:  # a debug panel is recording
        log.lost_fills(plan.keys.label, lost)


def _give_back(plan: ModelPlan, stores: list[tuple[Miss, str, Entry]]) -> list[Any]:
    with contextlib.suppress(Unavailable):  # if Redis is gone, the leases expire
        return _store(plan, stores)
    return [None] * len(stores)
