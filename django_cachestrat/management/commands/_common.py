"""Shared by the ``cachestrat_*`` commands: model and pk arguments, Redis guard, progress bar."""

from __future__ import annotations

import argparse
import contextlib
import difflib
from collections.abc import Iterator
from typing import Any

from django.apps import apps
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError, CommandParser, OutputWrapper
from django.db import models

from django_cachestrat import stats
from django_cachestrat.breaker import Unavailable
from django_cachestrat.client import REDIS_ERRORS, connection
from django_cachestrat.options import cached_models, is_cached
from django_cachestrat.plan import ModelPlan

__all__ = [
    "Progress",
    "add_progress_arguments",
    "cached_model",
    "clean_pk",
    "positive_int",
    "publish_stats",
    "redis_errors",
    "redis_guard",
]

#: Width of the bar between the brackets.
BAR_WIDTH = 30


def cached_model(label: str) -> type[models.Model]:
    """The concrete model named ``app_label.Model``, which must be cached."""
    app_label, dot, name = label.partition(".")
    if not (app_label and dot and name) or "." in name:
        raise CommandError(f"{label!r} is not a model name: use app_label.Model, e.g. auth.User.")
    try:
        model = apps.get_model(app_label, name)
    except LookupError as exc:
        raise CommandError(f"Unknown model {label!r}: {exc}{_did_you_mean(label)}") from None
    if not is_cached(model):
        raise CommandError(
            f"{model._meta.label} is not cached: inherit CacheAsideMixin or name it in "
            'CACHESTRAT["MODELS"].'
        )
    return model._meta.concrete_model or model


def _did_you_mean(label: str) -> str:
    names = {m._meta.label.lower(): m._meta.label for m in cached_models()}
    close = difflib.get_close_matches(label.lower(), names, n=3, cutoff=0.85)
    return f" Did you mean {' or '.join(names[c] for c in close)}?" if close else ""


def clean_pk(plan: ModelPlan, raw: str) -> Any:
    """A pk argument converted the way the ORM would, or a CommandError naming the problem."""
    field = plan.pk_field
    kind = f"{type(field).__name__} {field.name!r}"
    try:
        value = field.to_python(raw)
        field.run_validators(value)  # out of the column's range: an error, not a DataError
        return value
    except ValidationError as exc:
        problem = "; ".join(exc.messages)
        raise CommandError(
            f"Malformed pk {raw!r} for {plan.model._meta.label}: not a valid {kind} ({problem})"
        ) from None


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@contextlib.contextmanager
def redis_guard(doing: str) -> Iterator[None]:
    """Fail with a clear CommandError, not a traceback, when Redis cannot be reached.

    The library itself fails open (a dead Redis reads as a miss); a command run by hand
    must say so instead of reporting work it could not do.
    """
    try:
        connection().ping()
        yield
    except (*REDIS_ERRORS, Unavailable) as exc:
        raise CommandError(f"Redis is unavailable, could not {doing}: {exc}") from None


def redis_errors() -> int:
    """Redis errors this process has met so far (each one was served from the database)."""
    from django_cachestrat.breaker import breaker

    return breaker.errors


def publish_stats() -> None:
    """Send this process's statistics now: a command exits before the publisher runs."""
    with contextlib.suppress(*REDIS_ERRORS):
        stats.publish()


def add_progress_arguments(parser: CommandParser) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--progress",
        action="store_true",
        default=None,
        help="Show a progress bar on stderr (default: only when stderr is a terminal).",
    )
    group.add_argument(
        "--no-progress",
        action="store_false",
        dest="progress",
        help="Never show the progress bar.",
    )


class Progress:
    """A one-line ``[####    ] 40% (400/1000)`` bar on stderr, redrawn in place."""

    def __init__(self, out: OutputWrapper, total: int, label: str, enabled: bool | None) -> None:
        self.out = out
        self.total = total
        self.label = label
        self.done = 0
        self.enabled = out.isatty() if enabled is None else enabled
        self._drawn = ""

    def advance(self, by: int = 1) -> None:
        self.done += by
        self.draw()

    def draw(self) -> None:
        if not self.enabled:
            return
        line = self.render()
        if line != self._drawn:  # redraw only when the text changes
            self.out.write(f"\r{line}", style_func=str, ending="")
            self.out.flush()
            self._drawn = line

    def render(self) -> str:
        total = max(self.total, self.done)
        fraction = self.done / total if total else 1.0
        filled = round(fraction * BAR_WIDTH)
        bar = "#" * filled + " " * (BAR_WIDTH - filled)
        return f"{self.label} [{bar}] {fraction:4.0%} ({self.done}/{total})"

    def close(self) -> None:
        """End the line, so what follows starts on its own."""
        if self.enabled and self._drawn:
            self.out.write("", style_func=str, ending="\n")
            self.out.flush()
