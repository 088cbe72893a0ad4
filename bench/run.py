"""Run the benchmarks: ``python bench/run.py [--quick] [--rounds N] [--markdown PATH]``.

Without ``--only`` this runs the read path and consistency parts, then the write-behind
counters, the debug panel's cost, the cost of metrics and tracing on a hit, and the async
reads (``--only counters``, ``--only panel``, ``--only metrics`` or ``--only async`` runs one
alone; ``python -m bench.counters``, ``bench.panel`` and ``bench.metrics`` too). With
``--markdown PATH`` the tables of those parts go to ``PATH`` with ``-counters``, ``-panel`` or
``-metrics`` before the suffix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _counters_argv(argv: list[str], part: str = "counters") -> list[str]:
    out: list[str] = []
    items = iter(argv)
    for item in items:
        if item == "--quick":
            out.append(item)
        elif item in ("--rounds", "--markdown"):
            value = next(items, "")
            if item == "--markdown":
                path = Path(value)
                value = str(path.with_name(f"{path.stem}-{part}{path.suffix}"))
            if item == "--markdown" or part != "metrics":  # metrics sets its own rounds
                out += [item, value]
    return out


def main() -> int:
    # The repository root replaces this script's folder on the path, so ``bench`` is a
    # package and no module here can shadow the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    argv = sys.argv[1:]
    only = argv[argv.index("--only") + 1] if "--only" in argv[:-1] else None
    if only == "async":  # async reads (bench/async_reads.py) alone
        from bench.async_reads import main as run_async

        return run_async(argv)
    status = 0
    if only not in ("counters", "panel", "metrics"):
        from bench.cli import main as run

        status = run(argv)
    if only in (None, "counters"):
        from bench.counters import main as run_counters

        status = run_counters(_counters_argv(argv)) or status
    if only in (None, "metrics"):
        from bench.metrics import main as run_metrics

        status = run_metrics(_counters_argv(argv, "metrics")) or status
    if only in (None, "panel"):
        from bench.panel import main as run_panel

        status = run_panel(_counters_argv(argv, "panel")) or status
    if only is None:
        from bench.async_reads import main as run_async

        status = run_async(argv) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
