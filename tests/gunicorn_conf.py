"""gunicorn settings of the multi-process metrics test, as docs/operations.md shows them."""

from __future__ import annotations

from typing import Any

from prometheus_client import multiprocess


def child_exit(server: Any, worker: Any) -> None:
    # The files of a worker that exited still count for counters and histograms; its
    # gauges ("livemax") stop counting.
    multiprocess.mark_process_dead(worker.pid)
