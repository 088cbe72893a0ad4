"""Foreign keys whose on_delete the database applies (Django 6.1+); installed only there."""

from django.db import models

from django_cachestrat.mixins import CacheAsideMixin


class Author(models.Model):
    """Not cached: deleting one still changes cached rows, inside the database."""

    name = models.CharField(max_length=50)


class Book(CacheAsideMixin, models.Model):
    author = models.ForeignKey(Author, on_delete=models.DB_CASCADE)
    title = models.CharField(max_length=50)


class Chapter(CacheAsideMixin, models.Model):
    """Deleted by a chain of database cascades: author -> book -> chapter."""

    book = models.ForeignKey(Book, on_delete=models.DB_CASCADE)
    title = models.CharField(max_length=50)


class Review(CacheAsideMixin, models.Model):
    book = models.ForeignKey(Book, null=True, on_delete=models.DB_SET_NULL)
    text = models.CharField(max_length=50)


class Bookmark(CacheAsideMixin, models.Model):
    """Its foreign key is set to the column's database default when the book goes."""

    book = models.ForeignKey(Book, null=True, db_default=None, on_delete=models.DB_SET_DEFAULT)
    page = models.IntegerField(default=1)
