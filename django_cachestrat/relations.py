"""How tables relate: the foreign keys the database enforces, and the rows of
multi-table-inheritance relatives that have a primary key of their own."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from django.apps import apps
from django.db import models

__all__ = ["Graph", "child_pks", "concrete_models", "shares_pk"]

Model = type[models.Model]


def _db_actions() -> tuple[object, ...]:
    """Django's database-level ``on_delete`` handlers (6.1+): the database applies them."""
    return tuple(
        getattr(models, name)
        for name in ("DB_CASCADE", "DB_SET_NULL", "DB_SET_DEFAULT")
        if hasattr(models, name)
    )


def concrete_models() -> Iterator[Model]:
    """Every model with a table of its own, auto-created many-to-many tables included."""
    for model in apps.get_models(include_auto_created=True):
        if not model._meta.proxy:
            yield model


class Graph:
    """The foreign keys the database enforces between the tables of the installed models."""

    def __init__(self) -> None:
        self.referencing: dict[str, list[tuple[Model, models.ForeignKey[Any, Any]]]] = {}
        for model in concrete_models():
            for field in model._meta.local_concrete_fields:
                if isinstance(field, models.ForeignKey) and getattr(field, "db_constraint", True):
                    table = field.remote_field.model._meta.db_table
                    self.referencing.setdefault(table, []).append((model, field))

    def database_dependents(self, model: Model) -> list[Model]:
        """Models whose rows a ``DELETE`` on ``model``'s table changes inside the database:
        ``DB_SET_NULL`` and ``DB_SET_DEFAULT`` children, and ``DB_CASCADE`` chains."""
        actions = _db_actions()
        cascade = getattr(models, "DB_CASCADE", None)
        found: dict[Model, None] = {}
        todo = [model]
        while actions and todo:
            for child, field in self.referencing.get(todo.pop()._meta.db_table, ()):
                on_delete = field.remote_field.on_delete
                if on_delete in actions and child not in found:
                    found[child] = None
                    if on_delete is cascade:
                        todo.append(child)
        return list(found)

    def truncated_with(self, model: Model) -> list[Model]:
        """Models whose tables ``TRUNCATE ... CASCADE`` of ``model``'s table empties too:
        every table with a chain of foreign keys to it, whatever their ``on_delete``."""
        found: dict[Model, None] = {}
        todo = [model]
        while todo:
            for child, _ in self.referencing.get(todo.pop()._meta.db_table, ()):
                if child not in found and child is not model:
                    found[child] = None
                    todo.append(child)
        return list(found)

    def referenced_by(self, children: Iterable[Model]) -> set[str]:
        """Tables that ``children`` reach through chains of foreign keys: a ``TRUNCATE ...
        CASCADE`` of any of them empties some of ``children``."""
        parents: dict[str, list[str]] = {}
        for table, refs in self.referencing.items():
            for child, _ in refs:
                parents.setdefault(child._meta.db_table, []).append(table)
        reached: set[str] = set()
        todo = [m._meta.db_table for m in children]
        while todo:
            for table in parents.get(todo.pop(), ()):
                if table not in reached:
                    reached.add(table)
                    todo.append(table)
        return reached


def shares_pk(model: Model, other: Model) -> bool:
    """Whether a row of ``model`` and its ``other`` relative have the same pk value: each
    step of multi-table inheritance between them links by the child's primary key."""
    if other in model._meta.get_parent_list():
        child, ancestor = model, other
    elif model in other._meta.get_parent_list():
        child, ancestor = other, model
    else:
        return model is other
    while child is not ancestor:
        pk = child._meta.pk
        parent = next((p for p, link in child._meta.parents.items() if link is pk), None)
        if parent is None or (
            parent is not ancestor and ancestor not in parent._meta.get_parent_list()
        ):
            return False
        child = parent
    return True


def _link_path(child: Model, ancestor: Model) -> str:
    """The ORM path from ``child`` to its ``ancestor``'s row (``venue_ptr``)."""
    parts = []
    while child is not ancestor:
        link = child._meta.get_ancestor_link(ancestor)
        assert link is not None
        parts.append(link.name)
        child = link.remote_field.model
    return "__".join(parts)


def child_pks(model: Model, child: Model, pks: list[Any], using: str) -> list[Any]:
    """The pks of the ``child`` rows of the ``model`` rows given by ``pks`` (one ``SELECT``
    when the two do not share pk values)."""
    if shares_pk(model, child):
        return pks
    rows: models.QuerySet[models.Model] = models.QuerySet(child, using=using)
    rows = rows.filter(**{f"{_link_path(child, model)}__in": pks})
    return list(rows.values_list("pk", flat=True))
