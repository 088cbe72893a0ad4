"""Interleaved timing: each round runs every variant in slices, in a changing order; medians win."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import random
import statistics
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol, TypeVar

from bench.environment import progress

T = TypeVar("T")

#: The seed of the order :meth:`Clients.rounds` runs its cases in.
ORDER_SEED = 20261206


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


# --- client processes -------------------------------------------------------------------

Ops = dict[str, Callable[[Any], object]]


class ProcessCase(Protocol):
    """What :meth:`Clients.rounds` runs: the op named ``op`` in ``clients`` processes."""

    @property
    def key(self) -> str: ...
    @property
    def op(self) -> str: ...
    @property
    def clients(self) -> int: ...


@dataclass
class Rates:
    """Per round, µs per op (aggregate over the clients) and client CPU µs per op."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)


def _client(pipe: Connection, args: list[Any], make_ops: Callable[[], Ops]) -> None:
    """A client process: run ``count`` calls of an op when told, report start, end, CPU."""
    ops = make_ops()
    position = 0
    while (message := pipe.recv()) is not None:
        name, count = message
        chunk = [args[(position + i) % len(args)] for i in range(count)]
        position += count
        op = ops[name]
        gc.collect()
        gc.disable()  # as timeit does
        try:
            cpu = time.process_time_ns()
            start = time.perf_counter_ns()  # CLOCK_MONOTONIC: comparable across processes
            for arg in chunk:
                op(arg)
            end = time.perf_counter_ns()
            cpu = time.process_time_ns() - cpu
        except Exception:
            pipe.send(("error", traceback.format_exc()))
            continue
        finally:
            gc.enable()
        pipe.send((start, end, cpu))
    from django.db import connections

    connections.close_all()


class Clients:
    """``count`` forked client processes, each calling its ops on its own share of
    ``args`` (rows, say, so that UPDATEs never wait for each other's row locks); the ops
    are made by ``make_ops`` in each process, after the fork."""

    def __init__(self, count: int, args: Sequence[Any], make_ops: Callable[[], Ops]) -> None:
        from django.db import connections

        connections.close_all()  # a child must open its own connection, not share ours
        context = multiprocessing.get_context("fork")
        self.pipes: list[Connection] = []
        self.processes: list[Any] = []
        for index in range(count):
            here, there = context.Pipe()
            share = list(args[index::count])
            process = context.Process(target=_client, args=(there, share, make_ops))
            process.daemon = True
            process.start()
            there.close()
            self.pipes.append(here)
            self.processes.append(process)

    def run(self, op: str, count: int, clients: int) -> tuple[int, int]:
        """``count`` calls of ``op`` in each of the first ``clients`` processes at once:
        nanoseconds from the first start to the last end, and CPU nanoseconds summed."""
        pipes = self.pipes[:clients]
        for pipe in pipes:
            pipe.send((op, count))
        replies = [pipe.recv() for pipe in pipes]
        for reply in replies:
            if reply[0] == "error":
                raise RuntimeError(f"a client failed running {op}:\n{reply[1]}")
        start = min(reply[0] for reply in replies)
        end = max(reply[1] for reply in replies)
        return end - start, sum(reply[2] for reply in replies)

    def rounds(
        self,
        cases: Sequence[ProcessCase],
        calls: Mapping[str, int],
        rounds: int,
        slices: int,
        label: str = "",
    ) -> Rates:
        """One untimed warm-up round, then ``rounds`` rounds; in each, ``slices`` slices of
        every case, ``calls[key]`` calls per client per slice.

        Every slice runs the cases in a new random order (seeded: the same in every run).
        A rotating order keeps each case behind the same one, so whatever a case leaves
        behind (four busy clients, the database's background writes) always lands on
        the same next case. Rotated, the floor of the increments (always right after the
        4-client UPDATEs) made the bare script 1.30x of it; shuffled, 0.99x.
        """
        rates = Rates({c.key: [] for c in cases}, {c.key: [] for c in cases})
        order = random.Random(ORDER_SEED)
        for index in range(rounds + 1):
            wall, cpu, ops = (dict.fromkeys(rates.wall, 0) for _ in range(3))
            for _ in range(slices):
                for case in order.sample(list(cases), len(cases)):
                    span, used = self.run(case.op, calls[case.key], case.clients)
                    wall[case.key] += span
                    cpu[case.key] += used
                    ops[case.key] += calls[case.key] * case.clients
            if index == 0:
                continue  # warm-up
            for key in rates.wall:
                rates.wall[key].append(wall[key] / ops[key] / 1000)
                rates.cpu[key].append(cpu[key] / ops[key] / 1000)
            progress(f"{label} round {index}/{rounds}")
        return rates

    def __enter__(self) -> Clients:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send(None)
        for process in self.processes:
            process.join(10)
            if process.is_alive():
                process.terminate()
                process.join()
