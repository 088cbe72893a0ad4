"""The served project under gunicorn, wrk against it, and the database's count of queries."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.load_setup import ROOT, Database

#: gunicorn: one worker per core, threads so that a worker waiting on the network serves
#: other requests meanwhile (and keeps wrk's connections alive, which sync workers do not).
WORKERS = 2
THREADS = 4
READY_TIMEOUT = 60.0
#: What django_cachestrat logs (a warning) when a Redis call fails and the database serves.
FAIL_OPEN_MESSAGE = "Redis unavailable, serving from the database"
#: ``SELECT 1`` statements the round-trip probe times.
PROBES = 100
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Served:
    """What one gunicorn serves: the variant, the added database latency, where."""

    variant: str
    delay_ms: float
    db: Database
    redis_url: str
    logdir: Path

    @property
    def log(self) -> Path:
        return self.logdir / f"gunicorn-{self.variant}-{self.delay_ms:g}ms.log"

    def fail_open_reads(self) -> int:
        """Reads served from the database because Redis failed, as the app logged them."""
        if not self.log.exists():
            return 0
        return self.log.read_text(errors="replace").count(FAIL_OPEN_MESSAGE)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.loadsite.settings",
            "LOAD_VARIANT": self.variant,
            "LOAD_DB_DELAY_MS": str(self.delay_ms),
            "DATABASE_URL": self.db.url,
            "REDIS_URL": self.redis_url,
            "PYTHONPATH": str(ROOT),
        }


@dataclass(frozen=True)
class Server:
    port: int
    pid: int  # gunicorn's master process


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def gunicorn(served: Served, probe_path: str) -> Iterator[Server]:
    """Start gunicorn, wait until ``probe_path`` answers 200, yield it; stop it by pid."""
    port = free_port()
    log = served.log
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--workers={WORKERS}",
        "--worker-class=gthread",
        f"--threads={THREADS}",
        f"--bind=127.0.0.1:{port}",
        "--preload",
        "--log-level=warning",
        f"--error-logfile={log}",
        "example_project.wsgi:application",
    ]
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=served.env(), stdout=out, stderr=out)
    try:
        _wait_ready(proc, port, probe_path, log)
        yield Server(port, proc.pid)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (gunicorn's graceful stop), then SIGKILL if it is still there."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(OSError):
            status, _ = get(port, path)
            if status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn did not answer {path} within {READY_TIMEOUT:.0f} s")


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def check_pages(port: int, names: list[str]) -> None:
    """Each name's page answers 200 and shows that profile (one keep-alive connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for name in names:
            conn.request("GET", f"/u/{name}/")
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or f"@{name} ".encode() not in body:
                raise RuntimeError(f"/u/{name}/ answered {response.status} without @{name}")
    finally:
        conn.close()


def round_trip_ms(port: int) -> float:
    status, body = get(port, f"/_load/round-trip/?statements={PROBES}")
    if status != 200:
        raise RuntimeError(f"/_load/round-trip/ answered {status}")
    return float(json.loads(body)["median_ms"])


def committed(db: Database) -> int:
    """Transactions committed in the database, once none of its sessions is left.

    Each statement of the served project is a transaction of its own (autocommit), so the
    difference of two readings is its number of queries. A session publishes its counts at
    most once a second while busy, but always when it ends: reading only once every session
    of the database has ended (gunicorn stopped) makes the count exact.
    """
    with db.connect("postgres") as conn:
        deadline = time.monotonic() + STOP_TIMEOUT
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
        while (row := conn.execute(query, [db.name]).fetchone()) and row[0]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"sessions of {db.name} still open after gunicorn stopped")
            time.sleep(0.05)
        conn.execute("SELECT pg_stat_clear_snapshot()")
        query = "SELECT xact_commit FROM pg_stat_database WHERE datname = %s"
        row = conn.execute(query, [db.name]).fetchone()
        return int(row[0]) if row else 0
