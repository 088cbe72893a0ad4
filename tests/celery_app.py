"""The test project's Celery app: its broker is the local Redis (see ``CELERY_*`` in settings).

Importing this module makes ``app`` the default and current Celery app, so the shared tasks of
``django_cachestrat.tasks`` (and the flush that ``Profile.cached.incr`` queues by itself)
publish to this broker, from any thread or process of the test run.

The worker processes that :mod:`tests.workers` starts import it too. There, and only there,
environment variables turn on two test aids, both outside the library:

- ``CACHESTRAT_TEST_EVENTS``: a file to which every flush step is appended as a JSON line
  (claimed, reclaimed, duplicate, acknowledged, killed);
- ``CACHESTRAT_TEST_CRASH_AT``: one of :data:`CRASH_POINTS`, or ``random`` (one of them drawn
  when the worker starts): at that point of a flush the worker sends itself ``SIGKILL`` with
  probability ``CACHESTRAT_TEST_CRASH_CHANCE`` (default 0.5), so it dies mid-flush;
- ``CACHESTRAT_TEST_SLOW_APPLY``: seconds a flush waits inside its database transaction,
  after its updates, so that another flusher meets the batch still in flight.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_init, worker_ready

app = Celery("tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
app.set_default()
app.set_current()

#: Where a flush can be killed: before it claims a batch; after the claim; inside the
#: database transaction, the counters updated but not committed; after the commit, before
#: the acknowledgement in Redis.
CRASH_POINTS = ("before_claim", "after_claim", "before_commit", "after_commit")


def _recorder(path: str | None) -> Any:
    if not path:
        return lambda **event: None
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def record(**event: Any) -> None:
        # One write() per line on an O_APPEND file: lines of several workers never mix, and
        # a line written just before SIGKILL is not lost (it is in the kernel already).
        os.write(fd, (json.dumps({"pid": os.getpid(), **event}) + "\n").encode())

    return record


def instrument(crash_at: str | None, chance: float, events: str | None, slow: float) -> None:
    """Wrap the steps of a flush (module attributes that ``drain_stripe`` looks up at each
    call) to record them and, at ``crash_at``, to kill this process."""
    from django_cachestrat import drain

    record = _recorder(events)
    rng = random.Random()
    point = rng.choice(CRASH_POINTS) if crash_at == "random" else crash_at
    if point is not None and point not in CRASH_POINTS:
        raise ValueError(f"CACHESTRAT_TEST_CRASH_AT={crash_at!r}: not one of {CRASH_POINTS}")
    record(event="started", crash_at=point)
    claim, apply, update = drain.claim, drain.apply, drain._update
    drain_stripe = drain.drain_stripe
    batch: dict[str, str | None] = {"id": None}  # the batch in hand (solo pool: one at a time)

    def maybe_die(here: str) -> None:
        if here == point and rng.random() < chance:
            record(event="killed", point=here, batch=batch["id"])
            os.kill(os.getpid(), signal.SIGKILL)

    def claim_step(plan: Any, index: int, *using: Any) -> Any:
        batch["id"] = None
        maybe_die("before_claim")
        claimed = claim(plan, index, *using)
        if claimed is not None:
            result = claimed[0]
            batch["id"] = result.batch_id
            record(event="claimed", batch=result.batch_id, reclaimed=result.reclaimed)
            maybe_die("after_claim")
        return claimed

    def update_step(*args: Any, **kwargs: Any) -> None:
        update(*args, **kwargs)
        if slow:
            time.sleep(slow)
        maybe_die("before_commit")

    def apply_step(plan: Any, result: Any, deltas: Any) -> None:
        apply(plan, result, deltas)
        record(event="applied", batch=result.batch_id, duplicate=result.duplicate)
        maybe_die("after_commit")

    def flush_stripe_step(plan: Any, index: int, *using: Any) -> Any:
        result = drain_stripe(plan, index, *using)
        if result is not None:
            record(
                event="acknowledged",
                batch=result.batch_id,
                reclaimed=result.reclaimed,
                duplicate=result.duplicate,
                rows=result.rows,
            )
        return result

    drain.claim, drain.apply, drain._update = claim_step, apply_step, update_step
    drain.drain_stripe = flush_stripe_step


@worker_init.connect
def _on_worker_init(**kwargs: Any) -> None:
    crash_at = os.environ.get("CACHESTRAT_TEST_CRASH_AT") or None
    events = os.environ.get("CACHESTRAT_TEST_EVENTS")
    slow = float(os.environ.get("CACHESTRAT_TEST_SLOW_APPLY") or 0)
    if crash_at or events or slow:
        chance = float(os.environ.get("CACHESTRAT_TEST_CRASH_CHANCE") or 0.5)
        instrument(crash_at, chance, events, slow)


@worker_ready.connect
def _on_worker_ready(**kwargs: Any) -> None:
    ready = os.environ.get("CACHESTRAT_TEST_READY_FILE")
    if ready:
        Path(ready).write_text(str(os.getpid()))
