"""The app's own tables: write-behind batches, increments whose row was gone, missed deletes."""

from __future__ import annotations

from django.db import models

__all__ = ["Cache", "CounterBatch", "DeadLetter", "PendingInvalidation"]


class CounterBatch(models.Model):
    """A write-behind batch recorded in the same transaction that applied it.

    Its unique id is what makes a flush exactly-once: a batch claimed twice (its first
    flusher died after the commit) is recognised here and only acknowledged.
    """

    id = models.CharField(primary_key=True, max_length=32)
    model = models.CharField(max_length=200)
    stripe = models.PositiveIntegerField()
    rows = models.PositiveIntegerField(default=0)
    increments = models.BigIntegerField(default=0)
    dead_letters = models.PositiveIntegerField(default=0)
    duration_ms = models.FloatField(default=0)
    applied_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-applied_at"]
        verbose_name = "write-behind batch"
        verbose_name_plural = "write-behind batches"

    def __str__(self) -> str:
        return f"{self.model} batch {self.id}"


class Cache(CounterBatch):
    """The cache's own entry on the admin index, whose page is the cache overview.

    A proxy, so it has no table; with no permissions of its own, since the cache pages
    keep those of write-behind batches (``admin_views.VIEW_PERMISSION``).
    """

    class Meta:
        proxy = True
        default_permissions = ()
        verbose_name = "cache"
        verbose_name_plural = "cache"


class DeadLetter(models.Model):
    """An increment a flush could not apply (its row was deleted, the database refused it,
    ...), kept with the reason instead of blocking the increments flushed with it."""

    batch = models.ForeignKey(CounterBatch, on_delete=models.CASCADE, related_name="letters")
    model = models.CharField(max_length=200)
    pk_value = models.CharField("primary key", max_length=255)
    field = models.CharField(max_length=100)
    delta = models.BigIntegerField()
    reason = models.CharField(max_length=255, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "dead letter"

    def __str__(self) -> str:
        return f"{self.model}#{self.pk_value}.{self.field} {self.delta:+d}"


class PendingInvalidation(models.Model):
    """Deletes and generation bumps that Redis could not take when a write committed.

    Kept in the database, not only in the memory of the process that made the write, so
    that any process replays them once Redis answers, even after that process has exited.
    Replaying is idempotent (a DEL twice, or one more new generation, is harmless).
    """

    keys = models.JSONField(default=list)
    generations = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]
        verbose_name = "missed invalidation"

    def __str__(self) -> str:
        return f"{len(self.keys)} keys, {len(self.generations)} generations"
