"""Run the benchmarks: ``python bench/run.py [--quick] [--rounds N] [--markdown PATH]``."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> int:
    # The repository root replaces this script's folder on the path, so ``bench`` is a
    # package and no module here can shadow the standard library.
    sys.path[0] = str(Path(__file__).resolve().parent.parent)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    from bench.cli import main as run

    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
