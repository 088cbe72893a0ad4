"""Missed invalidations kept in the database, so any process can replay them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import router, transaction

from . import transactions
from .breaker import Unavailable
from .client import REDIS_ERRORS
from .models import PendingInvalidation
from .pending import NoRecords, pending, send_invalidations

__all__ = ["install", "record", "replay", "uninstall"]

logger = logging.getLogger("django_cachestrat")

#: Records sent to Redis per pipelined round trip.
BATCH = 500


def record(keys: Iterable[str], generations: Iterable[str]) -> None:
    """Keep invalidations that Redis could not take where every process finds them.

    Never raises: it runs once the user's write has committed, which must not fail for it.
    """
    keys, generations = sorted(keys), sorted(generations)
    if not (keys or generations):
        return
    try:
        using = router.db_for_write(PendingInvalidation)
        if transactions.holds_open_statement(using):
            # SQLite would roll the open write back with a transaction of ours: this
            # process keeps them (``pending``) and replays them once Redis answers.
            logger.info("Missed invalidations kept by this process only (SQLite write open)")
            return
        # A savepoint of its own: a failure here never breaks a transaction around it.
        with transaction.atomic(using=using):
            PendingInvalidation.objects.using(using).create(keys=keys, generations=generations)
    except Exception:  # the write is done; this process still holds them
        logger.warning(
            "Could not record missed invalidations in the database; only this process "
            "will replay them",
            exc_info=True,
        )


def replay() -> int:
    """Send every kept invalidation to Redis, then delete it; return how many were sent.

    A Redis error rises and the records stay. A database that cannot be read (no table
    yet, no database at all) is logged and skipped. Two processes replaying at once both
    send the same deletes, which is harmless.
    """
    using = router.db_for_write(PendingInvalidation)
    if transactions.in_transaction(using) or transactions.holds_open_statement(using):
        # Never inside the caller's transaction: its locks would be held until the caller
        # commits, and its DELETE would count as the caller's write. Later, outside one.
        # (A test case's own blocks aside.) Nor while a write on its connection is still
        # open: SQLite would fail the commit and roll that write back with it.
        raise Unavailable("missed invalidations are replayed outside transactions")
    table = PendingInvalidation.objects.using(using)
    sent = 0
    while True:
        try:
            with transaction.atomic(using=using):
                # Locked for this batch only, skipped by another process replaying at once.
                rows = list(
                    table.select_for_update(skip_locked=True)
                    .order_by("pk")
                    .values_list("pk", "keys", "generations")[:BATCH]
                )
                if rows:
                    keys = {key for _, row_keys, _ in rows for key in row_keys}
                    generations = {gen for _, _, row_gens in rows for gen in row_gens}
                    send_invalidations(keys, generations)  # a Redis error: the rows stay
                    table.filter(pk__in=[pk for pk, _, _ in rows]).delete()
        except REDIS_ERRORS:
            raise
        except Exception:  # reads of the cache must not depend on it
            logger.warning("Could not replay missed invalidations from the database", exc_info=True)
            return sent
        if not rows:
            return sent
        sent += len(rows)
        logger.info("Replayed %d missed invalidations kept in the database", len(rows))


def install() -> None:
    """Keep this process's missed invalidations in the database (the app's ``ready()``)."""
    pending.records = _Store()


def uninstall() -> None:
    pending.records = NoRecords()


class _Store:
    def record(self, keys: Iterable[str], generations: Iterable[str]) -> None:
        record(keys, generations)

    def replay(self) -> int:
        return replay()
