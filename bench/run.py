"""Run the benchmarks: ``python bench/run.py [--quick] [--rounds N] [--markdown PATH]``.

Without ``--only`` this runs the read path and consistency parts, then the write-behind
counters (``--only counters`` runs those alone; ``python -m bench.counters`` too), then the
cost of metrics and tracing on a hit (``--only metrics``; ``python -m bench.metrics``). With
``--markdown PATH`` the counters' tables go to ``PATH`` with ``-counters`` before the suffix,
and the metrics' with ``-metrics``.
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
            if item == "--markdown" or part == "counters":
                out += [item, value]
    return out


def main() -> int:
    # The repository root replaces this script's folder on the path, so ``bench`` is a
    # package and no module here can shadow the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    argv = sys.argv[1:]
    only = argv[argv.index("--only") + 1] if "--only" in argv[:-1] else None
    status = 0
    if only not in ("counters", "metrics"):
        from bench.cli import main as run

        status = run(argv)
    if only in (None, "counters"):
        from bench.counters import main as run_counters

        status = run_counters(_counters_argv(argv)) or status
    if only in (None, "metrics"):
        from bench.metrics import main as run_metrics

        status = run_metrics(_counters_argv(argv, "metrics")) or status
    return status


if __name__ == "__main__":
    sys.exit(main())
