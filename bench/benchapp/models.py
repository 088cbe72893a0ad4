"""``Article``: a dozen typical fields, cached by pk and by its unique slug."""

from __future__ import annotations

from uuid import uuid4

from django.db import models

from django_cachestrat.mixins import CacheAsideMixin


class Article(CacheAsideMixin, models.Model):
    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    body = models.TextField()
    author_id = models.IntegerField(db_index=True)
    published = models.DateTimeField()
    updated = models.DateTimeField(auto_now=True)
    views = models.IntegerField(default=0)
    score = models.FloatField(default=0.0)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    is_public = models.BooleanField(default=True)
    uuid = models.UUIDField(default=uuid4, unique=True)
    tags = models.JSONField(default=list)

    class CacheMeta:
        lookups = ("slug",)

    def __str__(self) -> str:
        return self.title
