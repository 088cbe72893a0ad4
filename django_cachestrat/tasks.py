"""Celery tasks (the only module that imports Celery): the write-behind flush."""

from __future__ import annotations

import dataclasses
from typing import Any

from celery import shared_task

from .conf import conf
from .flush import flush_all

__all__ = ["beat_schedule", "flush_counters"]


@shared_task(name="django_cachestrat.flush_counters", ignore_result=True)  # type: ignore[untyped-decorator]
def flush_counters() -> list[dict[str, Any]]:
    """Flush every model's pending counter increments to the database."""
    return [dataclasses.asdict(result) for result in flush_all()]


def beat_schedule() -> dict[str, dict[str, Any]]:
    """The entry to merge into ``CELERY_BEAT_SCHEDULE``: a flush every ``INTERVAL`` s."""
    interval = float(conf.WRITE_BEHIND["INTERVAL"])
    return {
        "django_cachestrat.flush_counters": {
            "task": "django_cachestrat.flush_counters",
            "schedule": interval,
        }
    }
