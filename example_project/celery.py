"""The Celery app of the example project: it runs django-cachestrat's write-behind flush.

    celery -A example_project worker -l info    # runs flush_counters
    celery -A example_project beat -l info      # queues it every WRITE_BEHIND["INTERVAL"] s

Configured from the Django settings named ``CELERY_*``; the broker defaults to the project's
Redis (see ``settings.py``).
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")

app = Celery("example_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()  # finds django_cachestrat.tasks.flush_counters


@app.on_after_configure.connect
def add_counter_flush(sender: Celery, **kwargs: Any) -> None:
    """Merge django-cachestrat's beat entry into ``beat_schedule``.

    This runs once Celery has read the Django settings, so the settings module itself never
    imports the app's code; entries set in ``CELERY_BEAT_SCHEDULE`` win.
    """
    from django_cachestrat.tasks import beat_schedule

    sender.conf.beat_schedule = {**beat_schedule(), **sender.conf.beat_schedule}
