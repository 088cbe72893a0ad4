"""Filters of the admin cache pages: durations, ratios and estimated counts."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()

__all__ = ["count", "microseconds", "milliseconds", "percent", "seconds"]

_UNITS = ((86400, "d"), (3600, "h"), (60, "min"), (1, "s"))


@register.filter
def seconds(value: Any) -> str:
    """``3725`` → ``"1 h 2 min"``: the two largest units."""
    if value is None or value == "":
        return "—"
    left = float(value)
    if left < 1:
        return f"{left * 1000:.0f} ms"
    parts: list[str] = []
    for size, unit in _UNITS:
        if left >= size and len(parts) < 2:
            parts.append(f"{int(left // size)} {unit}")
            left %= size
    return " ".join(parts)


@register.filter
def milliseconds(value: Any) -> str:
    """A ``PTTL``: ``None`` (no key) → "—", ``-1`` → "no expiry", else a duration."""
    if value is None or value == "":
        return "—"
    if int(value) < 0:
        return "no expiry"
    return seconds(int(value) / 1000)


@register.filter
def microseconds(value: Any) -> str:
    if value is None or value == "":
        return "—"
    us = float(value)
    return f"{us:.0f} µs" if us < 1000 else f"{us / 1000:.2f} ms"


@register.filter
def percent(value: Any) -> str:
    """``0.1`` → ``"10%"``, ``0.979`` → ``"97.9%"``."""
    if value is None or value == "":
        return "—"
    return f"{float(value):.1%}".replace(".0%", "%")


@register.filter
def count(value: Any) -> str:
    """A key count, estimated or exact: whole numbers with thousands separators."""
    return "—" if value is None or value == "" else f"{round(float(value)):,}"
