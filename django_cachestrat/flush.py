"""Former names of the write-behind drain (``drain.py``): importing them still works, with
a ``DeprecationWarning``. "Flush" now means only ``Model.cached.flush()``."""

from __future__ import annotations

import warnings
from typing import Any

from . import drain

__all__: list[str] = []  # the former names are served by __getattr__, with a warning

#: Former name -> name in ``django_cachestrat.drain``.
RENAMED = {
    "BatchResult": "BatchResult",
    "FlushError": "DrainError",
    "StripeError": "StripeError",
    "flush_all": "drain_all",
    "flush_model": "drain_model",
}


def __getattr__(name: str) -> Any:
    try:
        new = RENAMED[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    warnings.warn(
        f"django_cachestrat.flush.{name} is deprecated: use django_cachestrat.drain.{new}",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(drain, new)
