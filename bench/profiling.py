"""Where a cache hit spends its time: cProfile around many ``Article.cached.get(pk=)``."""

from __future__ import annotations

import cProfile
import io
import pstats
import time

from bench.benchapp.models import Article
from bench.cases import Context


def profile_hits(ctx: Context, calls: int, top: int = 25) -> str:
    """Wall time per hit without and with the profiler, then the top functions."""
    get = Article.cached.get
    pks = ctx.draw(calls)
    for pk in pks[:1000]:
        get(pk=pk)
    start = time.perf_counter()
    for pk in pks:
        get(pk=pk)
    plain = (time.perf_counter() - start) / calls * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    for pk in pks:
        get(pk=pk)
    profiler.disable()
    out = io.StringIO()
    out.write(f"{calls} hits: {plain:.1f} µs per hit without the profiler\n")
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()
