"""Models covering every field type the codec supports."""

import uuid

from django.db import models

from django_cachestrat.mixins import CacheAsideMixin


class Team(CacheAsideMixin, models.Model):
    name = models.CharField(max_length=50)


class Tag(models.Model):
    name = models.CharField(max_length=30, unique=True)


class Profile(CacheAsideMixin, models.Model):
    class Status(models.TextChoices):
        ACTIVE = "a", "Active"
        BANNED = "b", "Banned"

    username = models.CharField(max_length=50, unique=True)
    email = models.EmailField(blank=True)
    bio = models.TextField(blank=True)
    age = models.IntegerField(default=0)
    score = models.BigIntegerField(default=0)
    likes = models.PositiveIntegerField(default=0)
    balance = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    active = models.BooleanField(default=True)
    born = models.DateField(null=True, blank=True)
    last_seen = models.DateTimeField(null=True, blank=True)
    wakes_at = models.TimeField(null=True, blank=True)
    ref = models.UUIDField(default=uuid.uuid4)
    ratio = models.FloatField(default=0.0)
    data = models.JSONField(default=dict, blank=True)
    blob = models.BinaryField(null=True, blank=True)
    idle = models.DurationField(null=True, blank=True)
    status = models.CharField(max_length=1, choices=Status.choices, default=Status.ACTIVE)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    tags = models.ManyToManyField(Tag, blank=True)

    class CacheMeta:
        lookups = ("username",)
        counters = ("likes",)

    def __str__(self) -> str:
        return self.username


class ProfileProxy(Profile):
    class Meta:
        proxy = True


class Item(CacheAsideMixin, models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    code = models.CharField(max_length=20, unique=True)

    class CacheMeta:
        lookups = ("code",)
        timeout = 60


class Place(CacheAsideMixin, models.Model):
    name = models.CharField(max_length=50)
    visits = models.IntegerField(default=0)


class Restaurant(Place):
    stars = models.IntegerField(default=0)


class Plain(models.Model):
    """Not cached unless a test names it in CACHESTRAT["MODELS"]."""

    title = models.CharField(max_length=50)


class Comment(CacheAsideMixin, models.Model):
    """Deleted in cascade with its profile."""

    profile = models.ForeignKey(Profile, on_delete=models.CASCADE)
    text = models.CharField(max_length=100)


class Club(CacheAsideMixin, models.Model):
    name = models.CharField(max_length=50)
    members = models.ManyToManyField(Profile, through="Membership", related_name="clubs")


class Membership(CacheAsideMixin, models.Model):
    """An explicit through model whose rows are cached."""

    club = models.ForeignKey(Club, on_delete=models.CASCADE)
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE)
    key = models.CharField(max_length=40, unique=True, null=True)  # noqa: DJ001 - unique or none

    class CacheMeta:
        lookups = ("key",)


class Venue(CacheAsideMixin, models.Model):
    name = models.CharField(max_length=50)


class Stadium(Venue):
    """Multi-table inheritance with a primary key of its own: not the parent's pk."""

    number = models.BigAutoField(primary_key=True)
    venue_ptr = models.OneToOneField(Venue, parent_link=True, on_delete=models.CASCADE)
    seats = models.IntegerField(default=0)


class Schemed(CacheAsideMixin, models.Model):
    """A table in a schema of its own (created by the migration)."""

    name = models.CharField(max_length=50)

    class Meta:
        db_table = '"cachestrat_schema"."schemed"'


class Dotted(CacheAsideMixin, models.Model):
    """A table whose name holds a dot."""

    name = models.CharField(max_length=50)

    class Meta:
        db_table = "testapp.dotted"
