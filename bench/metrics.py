"""What metrics and tracing cost a hit: ``python -m bench.metrics [--quick] [--markdown PATH]``.

``Article.cached.get(pk=)`` hits are timed in four modes, switched before each slice, every
mode in every round, in rotating order:

- ``off``: ``METRICS`` and ``TRACING`` off (the baseline), and ``off again``, the same
  run as a mode of its own: its ratio to ``off`` is the noise of the measurement;
- ``metrics``: ``METRICS`` on, and :func:`metrics.sync` run at the end of each slice, inside
  the timed part. A slice is a few milliseconds, while the statistics thread syncs every 10
  seconds and a scrape every 15 s or so: this charges the hits far more syncs than they
  pay in production, so the ratio is an upper bound;
- ``tracing``: ``TRACING["ENABLED"]`` on (``READS`` off, the default);
- ``per-hit counter``: what the hint in ``metrics.py`` avoids, a prometheus-client
  ``Counter.labels(model).inc()`` on every hit, for reference.

Each slice is timed twice: wall-clock time, and the CPU time of the timing thread
(``time.thread_time_ns``). Metrics and tracing add CPU work, never a round trip, and a
shared host's loopback latency moves by more than 2 % between slices: the CPU time is the
figure the targets use, the wall-clock time is shown beside it. The run also times what
the modes add, alone: one :func:`metrics.sync` (as the statistics thread and a
scrape run it) and one ``Counter.labels().inc()``, each over ``CALLS`` calls.

Ratios are medians of the per-round ratios: the two figures of a round were measured side
by side, slice by slice, while the host's load moves between rounds far more than 2 %.

The switches are the ones the settings make (``metrics.install()``/``uninstall()``,
``tracing.configure()``), without a settings change, which would rebuild the model's plan.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Hits per mode per round, and the slices they are cut into.
FULL = (15, 6000, 60)
QUICK = (5, 1000, 10)
#: Hits per slice in both plans, so one sync per this many hits in the "metrics" mode.
SLICE_HITS = 100
#: Calls timed to give the cost of one sync and of one per-hit counter increment.
CALLS = 2000


@dataclass(frozen=True)
class Mode:
    key: str
    label: str
    enter: Callable[[], None]
    leave: Callable[[], None]
    op: Callable[[int], object]


def _modes() -> list[Mode]:
    from prometheus_client import Counter

    from bench.benchapp.models import Article
    from django_cachestrat import metrics, tracing

    get = Article.cached.get
    label = Article.cached.plan.keys.label
    # Registered nowhere (registry=None): only its cost counts.
    per_hit = Counter("bench_hits", "Hits, counted one by one.", ["model"], registry=None)

    def hit_and_count(pk: int) -> object:
        per_hit.labels(label).inc()
        return get(pk=pk)

    def nothing() -> None:
        pass

    return [
        Mode("off", "hit, METRICS and TRACING off", nothing, nothing, lambda pk: get(pk=pk)),
        Mode("again", "hit, off again (the noise)", nothing, nothing, lambda pk: get(pk=pk)),
        Mode(
            "metrics",
            "hit, METRICS on (+ a sync per slice)",
            metrics.install,
            _leave_metrics,
            lambda pk: get(pk=pk),
        ),
        Mode(
            "tracing",
            "hit, TRACING on (READS off)",
            lambda: tracing.configure(True),
            lambda: tracing.configure(False),
            lambda pk: get(pk=pk),
        ),
        Mode("counter", "hit + Counter.labels().inc() per hit", nothing, nothing, hit_and_count),
    ]


def _leave_metrics() -> None:
    from django_cachestrat import metrics

    metrics.sync()  # timed: see the module docstring
    metrics.uninstall()


def _round(
    modes: Sequence[Mode], pks: Sequence[int], shift: int, slices: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Wall-clock and CPU microseconds per hit of each mode in one round; the order
    rotates at each slice, so each mode takes each place in turn."""
    elapsed = dict.fromkeys((m.key for m in modes), 0)
    cpu = dict.fromkeys((m.key for m in modes), 0)
    gc.collect()
    gc.disable()
    try:
        for index in range(slices):
            part = pks[index::slices]
            turn = (shift + index) % len(modes)
            for mode in [*modes[turn:], *modes[:turn]]:
                start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
                mode.enter()
                for pk in part:
                    mode.op(pk)
                mode.leave()
                cpu[mode.key] += time.thread_time_ns() - start_cpu
                elapsed[mode.key] += time.perf_counter_ns() - start
    finally:
        gc.enable()
    per_hit = len(pks) * 1000.0
    return {k: ns / per_hit for k, ns in elapsed.items()}, {
        k: ns / per_hit for k, ns in cpu.items()
    }


def run(quick: bool) -> Any:
    """The report (``bench/report.py``) of one run."""
    import random

    from bench import database
    from bench.cli import QUICK as READ_QUICK
    from bench.cli import environment, prepare, progress, seed
    from bench.report import Line, Report, Section, Target, timing_section
    from bench.timing import Variant

    rounds, hits, slices = QUICK if quick else FULL
    pks = seed(READ_QUICK)
    prepare(pks)
    modes = _modes()
    rng = random.Random(11)
    draws = [rng.choice(pks) for _ in range(hits)]
    _round(modes, draws, 0, slices)  # warm-up, untimed
    samples: dict[str, list[float]] = {m.key: [] for m in modes}
    cpu: dict[str, list[float]] = {m.key: [] for m in modes}
    for index in range(rounds):
        progress(f"metrics: round {index + 1} of {rounds}")
        wall_round, cpu_round = _round(modes, draws, index, slices)
        for key in samples:
            samples[key].append(wall_round[key])
            cpu[key].append(cpu_round[key])
    sync_us, inc_us = _alone(modes)
    database.clean_redis()
    variants = [Variant(m.key, m.label, m.op, draws) for m in modes]
    on_cpu = timing_section("CPU time of a hit (the timing thread's)", variants, cpu)
    section: Section = timing_section("Wall-clock time of a hit", variants, samples)
    hit_us = statistics.median(cpu["off"])
    alone = Section(
        "The added work alone",
        ("Work", "µs/call", "x a hit's CPU time"),
        [
            Line(
                (
                    "metrics.sync() (every 10 s, and per scrape)",
                    f"{sync_us:.1f}",
                    f"{sync_us / hit_us:.3f}",
                )
            ),
            Line(("Counter.labels(model).inc()", f"{inc_us:.2f}", f"{inc_us / hit_us:.4f}")),
        ],
    )
    run_line = f"{rounds} rounds of {hits} hits per mode, each cut into {slices} slices"
    env = [*environment(READ_QUICK, ("reads",))[:-1], ("Run", run_line)]
    # The bound: what METRICS adds to a hit when a sync comes every SLICE_HITS hits, as in
    # the "metrics" mode (in production, one per 10 s and one per scrape).
    bound = 1 + sync_us / SLICE_HITS / hit_us
    targets: list[Target] = [
        Target(f"METRICS bound: (hit + sync / {SLICE_HITS}) / hit", bound, ("≤", 1.02), digits=4),
        paired("CPU: off again / off (the noise)", cpu, "again", "off"),
        paired("CPU: METRICS on / off", cpu, "metrics", "off", ("≤", 1.02)),
        paired("CPU: TRACING on / off", cpu, "tracing", "off", ("≤", 1.02)),
        paired("CPU: per-hit Counter / off", cpu, "counter", "off"),
        paired("wall: off again / off (the noise)", samples, "again", "off"),
        paired("wall: METRICS on / off", samples, "metrics", "off"),
        paired("wall: TRACING on / off", samples, "tracing", "off"),
        paired("wall: per-hit Counter / off", samples, "counter", "off"),
    ]
    return Report(env, [on_cpu, section, alone], targets)


def paired(
    name: str,
    samples: dict[str, list[float]],
    top: str,
    bottom: str,
    goal: tuple[str, float] | None = None,
) -> Any:
    """The median of the per-round ratios: each round's two figures were measured side by
    side, slice by slice, while the host's load moves between rounds far more than 2 %."""
    from bench.report import Target
    from bench.timing import paired_ratios, summarize

    ratios = paired_ratios(samples, top, bottom)
    return Target(name, statistics.median(ratios), goal, summarize(ratios))


def _alone(modes: Sequence[Mode]) -> tuple[float, float]:
    """µs per ``metrics.sync()`` and per ``Counter.labels().inc()``."""
    from prometheus_client import Counter

    from django_cachestrat import metrics

    metrics.install()
    counter = Counter("bench_alone", "Increments.", ["model"], registry=None)
    try:
        sync_us = _per_call(metrics.sync)
        inc_us = _per_call(lambda: counter.labels("benchapp.article").inc())
    finally:
        metrics.uninstall()
    return sync_us, inc_us


def _per_call(op: Callable[[], object]) -> float:
    start = time.perf_counter_ns()
    for _ in range(CALLS):
        op()
    return (time.perf_counter_ns() - start) / CALLS / 1000.0


def main(argv: list[str]) -> int:
    import django

    parser = argparse.ArgumentParser(prog="python -m bench.metrics", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run (5 small rounds)")
    parser.add_argument("--markdown", type=Path, metavar="PATH", help="also write Markdown here")
    args = parser.parse_args(argv)
    django.setup()
    from bench import database
    from bench.report import render_markdown, render_text

    database.ensure_database()
    database.create_schema()
    database.clean_redis()
    try:
        report = run(args.quick)
    finally:
        database.clean_redis()
    sys.stdout.write(render_text(report))
    if args.markdown is not None:
        args.markdown.write_text(render_markdown(report))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    sys.exit(main(sys.argv[1:]))
