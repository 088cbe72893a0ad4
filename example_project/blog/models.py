"""The Post model: cached by pk and by slug; likes and views are write-behind counters."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone

from django_cachestrat.mixins import CacheAsideMixin


class Post(CacheAsideMixin, models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    body = models.TextField()
    published = models.DateTimeField(default=timezone.now, db_index=True)
    # Incremented with Post.cached.incr(): Redis at once, the database at the next flush.
    likes = models.PositiveIntegerField(default=0)
    views = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ("-published", "-pk")

    class CacheMeta:
        lookups = ("slug",)
        counters = ("likes", "views")

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("post-detail", args=[self.slug])
