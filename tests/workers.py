"""Real Celery worker processes for the tests: started, awaited, killed and stopped by pid.

A worker runs ``celery -A tests.celery_app worker --pool solo`` (one process, the task runs
in it, so a ``SIGKILL`` mid-task kills the flush), against the database, the Redis cache and
the write-behind settings that the test process uses when the worker is started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection

from tests.celery_app import app

ROOT = Path(__file__).resolve().parent.parent
BOOT_TIMEOUT = 60.0


def read_events(path: Path) -> list[dict[str, Any]]:
    """The flush steps the workers recorded (see :mod:`tests.celery_app`)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class Worker:
    """One ``celery worker`` process consuming the test process's queue and its own."""

    def __init__(
        self,
        directory: Path,
        *,
        crash_at: str | None = None,
        chance: float = 0.5,
        events: Path | None = None,
        slow_apply: float = 0.0,
    ) -> None:
        self.name = f"w{uuid.uuid4().hex[:8]}"
        self.queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}.{self.name}"
        self.crash_at = crash_at
        self.chance = chance
        self.events = events
        self.slow_apply = slow_apply
        self.ready_file = directory / f"{self.name}.ready"
        self.log = directory / f"{self.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DJANGO_SETTINGS_MODULE="tests.settings",
            PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
            # The database pytest-django created, under its actual name.
            CACHESTRAT_TEST_DB_NAME=str(connection.settings_dict["NAME"]),
            CACHESTRAT_TEST_REDIS_URL=str(settings.CACHES["default"]["LOCATION"]),
            CACHESTRAT_TEST_QUEUE=settings.CELERY_TASK_DEFAULT_QUEUE,
            CACHESTRAT_TEST_WRITE_BEHIND=json.dumps(settings.CACHESTRAT.get("WRITE_BEHIND", {})),
            CACHESTRAT_TEST_READY_FILE=str(self.ready_file),
            CACHESTRAT_TEST_CRASH_AT=self.crash_at or "",
            CACHESTRAT_TEST_CRASH_CHANCE=str(self.chance),
            CACHESTRAT_TEST_EVENTS=str(self.events or ""),
            CACHESTRAT_TEST_SLOW_APPLY=str(self.slow_apply),
        )
        return env

    def start(self) -> Worker:
        args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "-l",
            "warning",
            "-n",
            f"{self.name}@%h",
            "-Q",
            f"{settings.CELERY_TASK_DEFAULT_QUEUE},{self.queue}",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                args, cwd=ROOT, env=self.environment(), stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> Worker:
        deadline = time.monotonic() + timeout
        while not self.ready_file.exists():
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited at start:\n{self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {self.name} not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.05)
        return self

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def flush(self, **options: Any) -> None:
        """Queue a write-behind flush for this worker alone."""
        from django_cachestrat.tasks import flush_counters

        flush_counters.apply_async(queue=self.queue, **options)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit status once the process has ended, or None if it still runs."""
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    @property
    def killed(self) -> bool:
        return self.process is not None and self.process.returncode == -signal.SIGKILL

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (a warm shutdown finishes the task in hand), then SIGKILL; by pid."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        if self.wait_exit(grace) is None:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Workers:
    """Every worker a test starts, stopped (by pid) when the ``with`` block ends, even on
    failure; the queues they used are deleted from the broker."""

    def __init__(self, events: Path | None = None) -> None:
        self.events = events
        self.started: list[Worker] = []
        self._directory = tempfile.TemporaryDirectory(prefix="cachestrat-workers-")
        self.directory = Path(self._directory.name)

    def start(self, **options: Any) -> Worker:
        options.setdefault("events", self.events)
        worker = Worker(self.directory, **options).start()
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        for worker in self.started:
            try:
                worker.stop()
            except Exception:  # keep stopping the others; the last resort is SIGKILL
                if worker.process is not None and worker.process.poll() is None:
                    worker.process.kill()

    def purge(self) -> None:
        """Delete the queues of this test from the broker, and the messages that killed
        workers had taken but not acknowledged (the broker would requeue them later)."""
        queues = {settings.CELERY_TASK_DEFAULT_QUEUE, *(w.queue for w in self.started)}
        with app.connection_for_write() as conn:
            client = conn.default_channel.client
            for queue in queues:
                client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
            for tag, raw in client.hscan_iter("unacked"):
                try:
                    _, exchange, routing_key = json.loads(raw)
                except ValueError:
                    continue
                if exchange in queues or routing_key in queues:
                    client.hdel("unacked", tag)
                    client.zrem("unacked_index", tag)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.stop_all()
            self.purge()
        finally:
            self._directory.cleanup()
