"""Leases (Nishtala et al., NSDI 2013, §3.2): one filler per key, stale fills dropped."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .client import Call, Unavailable, connection, fail_open, scripts
from .plan import ModelPlan
from .transactions import can_fill

__all__ = ["MISSING", "Loaded", "Miss", "leased"]

#: A decoded "this row does not exist" marker (a miss sentinel, never None).
MISSING: Any = object()


class Miss(NamedTuple):
    ident: Any  # the pk, or the lookup value
    key: str
    discard: bytes  # the unusable value seen under this key, removed when taking the lease


# What a leased load returns per ident: the value for the caller, and the payload to store
# (None: do not store, give the lease back).
Loaded = dict[Any, tuple[Any, bytes | None]]


@fail_open
def _leases(plan: ModelPlan, misses: Sequence[Miss]) -> list[Any]:
    token = os.urandom(8).hex()
    calls = [
        (scripts.lease, (m.key, plan.keys.lease(m.key)), (token, plan.lease_ms, m.discard))
        for m in misses
    ]
    outcomes = scripts.run_many(connection(), calls)
    return [(token if out == 1 else out) for out in outcomes]


@fail_open
def _store(plan: ModelPlan, stores: Sequence[tuple[Miss, str, bytes | None, float]]) -> None:
    calls: list[Call] = []
    for miss, token, payload, timeout in stores:
        lease = plan.keys.lease(miss.key)
        if payload is None:
            calls.append((scripts.release, (lease,), (token,)))
        else:
            calls.append((scripts.fill, (miss.key, lease), (token, payload, plan.ttl_ms(timeout))))
    scripts.run_many(connection(), calls)


def leased(
    plan: ModelPlan,
    misses: list[Miss],
    decode: Callable[[bytes], Any],
    load: Callable[[list[Any]], Loaded],
    using: str,
    wait: bool = True,
) -> dict[Any, Any]:
    """Resolve misses under leases (Nishtala et al., NSDI 2013, §3.2).

    The holder of a key's lease reads the database and fills; the others wait, with a
    bounded back-off, for that fill, then read the database without filling. Absent rows
    are left out of the result.
    """
    found: dict[Any, Any] = {}
    if not can_fill(using, plan.keys.label):
        misses_left = misses
    else:
        misses_left = _lease_rounds(plan, misses, decode, load, found, wait)
    if misses_left and wait:
        loaded = load([m.ident for m in misses_left])
        found.update((k, v) for k, (v, _) in loaded.items())
    return {k: v for k, v in found.items() if v is not MISSING}


def _lease_rounds(
    plan: ModelPlan,
    misses: list[Miss],
    decode: Callable[[bytes], Any],
    load: Callable[[list[Any]], Loaded],
    found: dict[Any, Any],
    wait: bool,
) -> list[Miss]:
    deadline = time.monotonic() + (plan.lease_wait if wait else 0.0)
    delay = 0.002
    while misses:
        try:
            outcomes = _leases(plan, misses)
        except Unavailable:
            return misses
        mine: list[tuple[Miss, str]] = []
        waiting: list[Miss] = []
        for miss, out in zip(misses, outcomes, strict=True):
            if isinstance(out, str):
                mine.append((miss, out))
            elif isinstance(out, bytes) and (value := decode(out)) is not None:
                found[miss.ident] = value
            else:
                waiting.append(miss._replace(discard=out if isinstance(out, bytes) else b""))
        if mine:
            _load_and_fill(plan, mine, load, found)
        misses = waiting
        remaining = deadline - time.monotonic()
        if not misses or remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, 0.05)
    return misses


def _load_and_fill(
    plan: ModelPlan,
    mine: list[tuple[Miss, str]],
    load: Callable[[list[Any]], Loaded],
    found: dict[Any, Any],
) -> None:
    try:
        loaded = load([m.ident for m, _ in mine])
    except BaseException:
        _give_back(plan, [(m, token, None, 0.0) for m, token in mine])
        raise
    stores = []
    for miss, token in mine:
        value, payload = loaded[miss.ident]
        found[miss.ident] = value
        timeout = plan.negative_timeout if value is MISSING else plan.timeout
        stores.append((miss, token, payload if timeout > 0 else None, timeout))
    _give_back(plan, stores)


def _give_back(plan: ModelPlan, stores: list[tuple[Miss, str, bytes | None, float]]) -> None:
    with contextlib.suppress(Unavailable):  # if Redis is gone, the leases expire
        _store(plan, stores)
