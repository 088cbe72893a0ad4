"""``manage.py cachestrat_replay_invalidations``: send the invalidations kept for replay."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_cachestrat import durable

from ._common import redis_guard


class Command(BaseCommand):
    help = (
        "Send to Redis the invalidations that writes could not deliver while it was "
        "unavailable (kept in the database), then delete them. Safe to run at any time."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        with redis_guard("replay the missed invalidations"):
            sent = durable.replay()
        plural = "s" * (sent != 1)
        self.stdout.write(self.style.SUCCESS(f"Replayed {sent} missed invalidation{plural}."))
