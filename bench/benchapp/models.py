"""The benchmark models.

``Article``: a dozen typical fields, cached by pk and by its unique slug; its ~500-character
body makes values dominate a cached row. ``Member``: a small account row shaped like
``auth.User`` (short strings, flags, two datetimes, a counter), where per-row overhead
dominates instead.
"""

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


class Member(CacheAsideMixin, models.Model):
    username = models.CharField(max_length=150, unique=True)
    email = models.EmailField(max_length=254)
    first_name = models.CharField(max_length=150)
    last_name = models.CharField(max_length=150)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    is_superuser = models.BooleanField(default=False)
    date_joined = models.DateTimeField()
    last_login = models.DateTimeField(null=True)
    logins = models.IntegerField(default=0)

    class CacheMeta:
        lookups = ("username",)

    def __str__(self) -> str:
        return self.username


class Post(CacheAsideMixin, models.Model):
    """A row with two write-behind counters, for the counter benchmarks (``bench.counters``)."""

    likes = models.PositiveIntegerField(default=0)
    views = models.PositiveIntegerField(default=0)

    class CacheMeta:
        counters = ("likes", "views")

    def __str__(self) -> str:
        return f"post {self.pk}"
