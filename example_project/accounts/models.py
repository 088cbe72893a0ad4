"""The Profile model: cached by pk and by username."""

from __future__ import annotations

from django.db import models
from django.urls import reverse
from django.utils import timezone

from django_cachestrat.mixins import CacheAsideMixin


class Profile(CacheAsideMixin, models.Model):
    username = models.CharField(max_length=50, unique=True)
    display_name = models.CharField(max_length=100, blank=True)
    bio = models.TextField(blank=True)
    joined = models.DateTimeField(default=timezone.now)
    karma = models.IntegerField(default=0)

    class CacheMeta:
        lookups = ("username",)

    def __str__(self) -> str:
        return self.username

    def get_absolute_url(self) -> str:
        return reverse("profile-detail", args=[self.username])
