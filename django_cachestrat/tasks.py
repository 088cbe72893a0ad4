"""Celery tasks (the only module that imports Celery): the write-behind flush and replays."""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import shared_task

from . import durable
from .conf import conf
from .flush import flush_all

__all__ = ["beat_schedule", "flush_counters", "replay_invalidations"]


@shared_task(name="django_cachestrat.flush_counters", ignore_result=True)  # type: ignore[untyped-decorator]
def flush_counters() -> list[dict[str, Any]]:
    """Flush every model's pending counter increments to the database."""
    return [dataclasses.asdict(result) for result in flush_all()]


@shared_task(name="django_cachestrat.replay_invalidations", ignore_result=True)  # type: ignore[untyped-decorator]
def replay_invalidations() -> int:
    """Send the invalidations kept in the database because Redis could not take them."""
    return durable.replay()


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The entries to merge into ``CELERY_BEAT_SCHEDULE``: a flush and a replay of missed
    invalidations, every ``INTERVAL`` s."""
    interval = float(conf.WRITE_BEHIND["INTERVAL"])
    names = ("django_cachestrat.flush_counters", "django_cachestrat.replay_invalidations")
    return {name: {"task": name, "schedule": interval} for name in names}
