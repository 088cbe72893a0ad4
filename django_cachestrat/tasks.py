"""Celery tasks (the only module that imports Celery): the write-behind flush and replays."""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import shared_task

from . import durable, external
from .conf import conf
from .drain import drain_all

__all__ = ["beat_schedule", "consume_external_writes", "flush_counters", "replay_invalidations"]


@shared_task(name="django_cachestrat.flush_counters", ignore_result=True)  # type: ignore[untyped-decorator]
def flush_counters() -> list[dict[str, Any]]:
    """Flush every model's pending counter increments to the database."""
    return [dataclasses.asdict(result) for result in drain_all()]


@shared_task(name="django_cachestrat.replay_invalidations", ignore_result=True)  # type: ignore[untyped-decorator]
def replay_invalidations() -> int:
    """Send the invalidations kept in the database because Redis could not take them."""
    return durable.replay()


@shared_task(name="django_cachestrat.consume_external_writes", ignore_result=True)  # type: ignore[untyped-decorator]
def consume_external_writes() -> int:
    """Invalidate the writes made outside Django that the capture triggers recorded, on
    every database where the capture is installed (at least once: see external.py)."""
    return external.consume_all()


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The entries to merge into ``CELERY_BEAT_SCHEDULE``: a flush and a replay of missed
    invalidations, every ``WRITE_BEHIND["INTERVAL"]`` s, and with ``EXTERNAL_WRITES``
    enabled, their consumer every ``EXTERNAL_WRITES["INTERVAL"]`` s."""
    interval = float(conf.WRITE_BEHIND["INTERVAL"])
    names = ("django_cachestrat.flush_counters", "django_cachestrat.replay_invalidations")
    schedule = {name: {"task": name, "schedule": interval} for name in names}
    external_writes = conf.EXTERNAL_WRITES
    if external_writes["ENABLED"]:
        name = "django_cachestrat.consume_external_writes"
        schedule[name] = {"task": name, "schedule": float(external_writes["INTERVAL"])}
    return schedule
