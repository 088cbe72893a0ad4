"""``manage.py cachestrat_external_writes install|uninstall|status|consume [--once]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from django_cachestrat import external

from ._common import positive_int, redis_guard


class Command(BaseCommand):
    help = (
        "Capture writes made outside Django (PostgreSQL triggers into an outbox table) and "
        "invalidate them: install or uninstall the capture, show its status, or consume the "
        "outbox (until stopped, or with --once until it is empty)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["install", "uninstall", "status", "consume"])
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")
        parser.add_argument("--once", action="store_true", help="consume: stop when empty.")
        parser.add_argument("--batch-size", type=positive_int, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        using = options["database"]
        if using not in connections:
            raise CommandError(f"Unknown database {using!r}: choose from {sorted(connections)}.")
        if connections[using].vendor != "postgresql":
            raise CommandError(f"Capturing outside writes needs PostgreSQL; {using!r} is not.")
        action = options["action"]
        if action == "install":
            tables = external.install(using)
            self.stdout.write(self.style.SUCCESS(f"Capturing {len(tables)} tables: {tables}"))
        elif action == "uninstall":
            tables = external.uninstall(using)
            self.stdout.write(self.style.SUCCESS(f"Stopped capturing {len(tables)} tables."))
        elif action == "status":
            self.stdout.write(json.dumps(external.status(using), indent=2))
        else:
            self._consume(using, options["once"], options["batch_size"])

    def _consume(self, using: str, once: bool, batch_size: int | None) -> None:
        if not external.status(using)["outbox"]:
            raise CommandError(f"The capture is not installed on {using!r}: run install first.")
        while True:
            with redis_guard("invalidate the captured writes"):
                done = external.consume(using, batch_size)
            if once:
                self.stdout.write(self.style.SUCCESS(f"Consumed {done} captured writes."))
                return
            if not done:
                external.wait_interval()
