"""The rows the last write statement in a thread invalidated: the model signal that
follows (``save()``, ``delete()``) need not invalidate them again."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from django.db import models

__all__ = ["mark", "was_handled"]


class _Handled(threading.local):
    """The rows the last write statement in this thread invalidated, so the model signal
    that follows it (``save()``, ``delete()``) need not do it again."""

    label: str | None = None
    pks: frozenset[Any] = frozenset()


_handled = _Handled()


def was_handled(model: type[models.Model], pk: Any) -> bool:
    concrete = model._meta.concrete_model or model
    try:
        return _handled.label == concrete._meta.label_lower and pk in _handled.pks
    except TypeError:  # an unhashable pk value
        return False


def mark(model: type[models.Model] | None, pks: Iterable[Any] | None) -> None:
    try:
        _handled.pks = frozenset(pks or ())
    except TypeError:
        pks = None
    _handled.label = model._meta.label_lower if model is not None and pks is not None else None
    if _handled.label is None:
        _handled.pks = frozenset()
