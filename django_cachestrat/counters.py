"""Write-behind increments: recorded in Redis in one round trip, settled if a reply is lost."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import router
from django.db.models import F
from django.db.models.functions import Greatest

from . import requestlog, transactions
from .breaker import Unavailable
from .client import topology
from .counter_input import validate
from .failopen import fail_open
from .keys import StripeKeys, key_part, member_of_text, stripe_of_text
from .pending import pending
from .plan import ModelPlan
from .scripts import run_many, scripts
from .topology import NodeDown, ReplicaLag

__all__ = ["forget_pending", "incr"]

logger = logging.getLogger("django_cachestrat")

#: How often a full stripe may ask for a flush (one caller per period).
TRIGGER_THROTTLE_MS = 1000


def incr(plan: ModelPlan, pk: Any, field: str, by: int = 1, using: str | None = None) -> None:
    """Add ``by`` to a counter: one Redis round trip; Celery applies it to the database.

    Inside a transaction the increment waits for the commit, so a rollback drops it.
    """
    using = using or router.db_for_write(plan.model)
    validate(plan, field, by, using)
    pk = plan.clean_pk(pk)
    state, in_test = transactions.scope_for(using)
    if state is not None:
        # Whether a test case holds the connection is asked again at the commit.
        state.add_hook(
            lambda _: _incr_now(plan, pk, field, by, using, transactions.in_test_scope(using))
        )
    else:
        _incr_now(plan, pk, field, by, using, in_test)


class _Sequence(threading.local):
    """Each thread numbers its increments, under an id of its own."""

    def __init__(self) -> None:
        self.client = uuid.uuid4().hex[:16]
        self.number = 0
        self.keys: dict[str, _ScriptKeys] = {}

    def next(self) -> int:
        self.number += 1
        return self.number

    def restart(self) -> None:
        """Number under a new id from now on: the settle call of a lost reply then meets
        no later number of this thread under the old id, so it can tell whether Redis
        applied the increment (even if another thread sends it late)."""
        self.client = uuid.uuid4().hex[:16]
        self.keys = {}

    def script_keys(self, stripe: StripeKeys) -> _ScriptKeys:
        """``incr.lua``'s keys in this stripe: pending, throttle, this thread's sequence."""
        try:
            return self.keys[stripe.pending]
        except KeyError:
            text = (stripe.pending, stripe.throttle, stripe.sequence(self.client))
            keys = self.keys[stripe.pending] = (text, tuple(k.encode() for k in text))
            return keys


#: A stripe's keys for ``incr.lua`` as text, and encoded once for the hot path (redis-py
#: sends bytes as they are, and encodes every other argument on every call).
_ScriptKeys = tuple[tuple[str, str, str], tuple[bytes, ...]]


_sequence = _Sequence()


def _new_sequence_after_fork() -> None:
    global _sequence
    _sequence = _Sequence()  # a child must never reuse its parent's numbers


os.register_at_fork(after_in_child=_new_sequence_after_fork)


def _incr_now(plan: ModelPlan, pk: Any, field: str, by: int, using: str, in_test: bool) -> None:
    if (log := requestlog.active()) is not None:  # a debug panel is recording
        log.increment(plan.keys.label, by)
    if in_test:
        # Inside a test case the increment joins the test's transaction, and goes with its
        # rollback: pending increments in Redis would outlive it, for the next test to see.
        _incr_database(plan, pk, field, by, using)
        return
    text = key_part(pk)  # the pk's text, once: it picks the stripe and names the member
    space = plan.space(using)  # the database the increment is for: its rows, its stripes
    stripe = space.stripe(stripe_of_text(text, plan.stripes))
    member = member_of_text(field, text)
    keys = _sequence.script_keys(stripe)
    number = _sequence.next()
    try:
        _, trigger = _incr_redis(keys, member, by, number, plan.batch_size)
    except (Unavailable, ReplicaLag) as exc:
        _incr_database(plan, pk, field, by, using)  # fail-open: nothing is lost
        # A lost reply, or an increment on a primary that no replica confirmed (a failover
        # may lose it): either way it may be in Redis, and is now in the database.
        if _may_have_run(exc):
            # The command may have reached Redis and run there: settle it once Redis
            # answers (undo it if it ran, else make sure it never will).
            _sequence.restart()
            sequence_key = keys[0][2]
            settle = (stripe.pending, sequence_key, stripe.settled(sequence_key, number))
            pending.add_call((scripts.cancel, settle, (member, by, number, SEQUENCE_KEEP_MS)))
        return
    if trigger:
        _request_flush()


def _may_have_run(exc: Exception) -> bool:
    """Whether a failed increment may still have reached Redis: not when it was never sent
    (the breaker was open, or its cluster node's was), so it needs no settle call."""
    if isinstance(exc, ReplicaLag):
        return True
    cause = exc.__cause__
    return cause is not None and not (isinstance(cause, NodeDown) and not cause.failed)


def forget_pending(plans: Iterable[ModelPlan], using: str) -> None:
    """The models' tables were emptied (``TRUNCATE``): their pending increments name rows
    that are gone, and would be added to new rows that reuse the pks."""
    with contextlib.suppress(Unavailable):
        _drop_stripes([p for p in plans if p.options.counters], using)


@fail_open
def _drop_stripes(plans: list[ModelPlan], using: str) -> None:
    if not plans:
        return
    pipe = topology().pipeline()
    for plan in plans:
        space = plan.space(using)
        for index in range(plan.stripes):
            stripe = space.stripe(index)
            # One DEL of one slot: a cluster pipeline refuses delete() of several keys.
            pipe.execute_command("DEL", stripe.pending, stripe.claimed, stripe.claim)
            pipe.incr(stripe.version)  # readers notice the batch that went away
    pipe.execute()


#: How long a thread's last increment number is remembered per stripe (a lost reply is
#: settled long before).
SEQUENCE_KEEP_MS = 24 * 3600 * 1000


@fail_open
def _incr_redis(keys: _ScriptKeys, member: str, by: int, number: int, batch_size: int) -> list[int]:
    shape = topology()
    packed = (member, by, batch_size, _THROTTLE_ARG, number, _KEEP_ARG)
    if shape.may_lag:
        # Invariant 6 across a failover: the increment counts as accepted only once a
        # replica holds it (WAIT 1, in the same round trip); else ReplicaLag. The keys
        # go as text: the cluster finds their node by them.
        return run_many(shape.client, [(scripts.incr, keys[0], packed)], wait=True)[0]  # type: ignore[no-any-return]
    return scripts.incr(shape.client, keys[1], packed)  # type: ignore[no-any-return]


_THROTTLE_ARG = b"%d" % TRIGGER_THROTTLE_MS  # the same bytes on the wire as the int
_KEEP_ARG = b"%d" % SEQUENCE_KEEP_MS


def _incr_database(plan: ModelPlan, pk: Any, field: str, by: int, using: str) -> None:
    updated: Any = F(field) + by
    if plan.is_positive(field):
        updated = Greatest(updated, 0)
    plan.rows(using).filter(pk=pk).update(**{field: updated})


#: The Celery task that flushes every stripe (``tasks.flush_counters``).
FLUSH_TASK = "django_cachestrat.flush_counters"


def _request_flush() -> None:
    try:
        # By name, so this layer never imports the one above it; Celery is optional.
        from celery import current_app

        current_app.send_task(FLUSH_TASK, retry=False)  # never hold an increment up
    except Exception as exc:  # no Celery, or no broker: the periodic flush will come
        logger.warning("Could not queue a write-behind flush: %s", exc)
