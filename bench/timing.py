"""Interleaved timing: each round runs every variant in slices, in rotating order; medians win."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Variant:
    """One thing to time: ``op(arg)`` for every arg; ``prepare(args)`` runs untimed first."""

    key: str
    label: str
    op: Callable[[Any], object]
    args: Sequence[Any]
    prepare: Callable[[Sequence[Any]], None] | None = None


@dataclass(frozen=True)
class Summary:
    """Per-call times of one variant over all rounds, in microseconds."""

    median: float
    p25: float
    p75: float
    rounds: int


def _time_calls(op: Callable[[Any], object], args: Sequence[Any]) -> int:
    start = time.perf_counter_ns()
    for arg in args:
        op(arg)
    return time.perf_counter_ns() - start


def rotated(variants: Sequence[T], shift: int) -> list[T]:
    """The order of one round: the variants shifted by ``shift``, so none always goes first."""
    shift %= len(variants)
    return [*variants[shift:], *variants[:shift]]


def run_round(variants: Sequence[Variant], shift: int, slices: int) -> dict[str, float]:
    """Microseconds per call of each variant in one round.

    Each variant's calls are cut into ``slices`` slices run A B C A B C ..., so a variant
    and its reference share the machine's state of the moment (this host's loopback
    latency jumps between two levels for seconds at a time). The collector is paused
    during the round, as ``timeit`` does.
    """
    order = rotated(variants, shift)
    parts = {v.key: [v.args[i::slices] for i in range(slices)] for v in variants}
    for variant in order:
        if variant.prepare is not None:
            variant.prepare(variant.args)
    elapsed = dict.fromkeys(parts, 0)
    gc.collect()
    gc.disable()
    try:
        for index in range(slices):
            for variant in order:
                elapsed[variant.key] += _time_calls(variant.op, parts[variant.key][index])
    finally:
        gc.enable()
    return {v.key: elapsed[v.key] / len(v.args) / 1000.0 for v in variants}


def run_rounds(variants: Sequence[Variant], rounds: int, slices: int) -> dict[str, list[float]]:
    """One untimed warm-up round, then ``rounds`` timed rounds; per-round µs per call."""
    run_round(variants, 0, slices)
    samples: dict[str, list[float]] = {v.key: [] for v in variants}
    for index in range(rounds):
        for key, value in run_round(variants, index, slices).items():
            samples[key].append(value)
    return samples


def summarize(values: Sequence[float]) -> Summary:
    if len(values) < 2:
        return Summary(values[0], values[0], values[0], len(values))
    p25, _, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return Summary(statistics.median(values), p25, p75, len(values))


def paired_ratios(samples: dict[str, list[float]], top: str, bottom: str) -> list[float]:
    """Per-round ratios of two variants timed side by side."""
    return [a / b for a, b in zip(samples[top], samples[bottom], strict=True)]
