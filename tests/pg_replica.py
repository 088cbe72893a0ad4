"""A real PostgreSQL primary and streaming replica on loopback ports, for the lag tests.

``initdb`` makes the primary, ``pg_basebackup -R`` the replica, which applies every commit
``APPLY_DELAY`` after it (``recovery_min_apply_delay``): a replica that lags, on purpose.
Both run as the ``postgres`` user from a temporary directory and are stopped by pid.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

BIN = Path(os.environ.get("CACHESTRAT_PG_BIN", "/usr/lib/postgresql/15/bin"))
APPLY_DELAY = "200ms"


def is_available() -> bool:
    """Whether this machine can start clusters: the binaries, and root to switch user."""
    return (BIN / "initdb").exists() and os.geteuid() == 0 and shutil.which("runuser") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(*args: str) -> None:
    subprocess.run(
        ["runuser", "-u", "postgres", "--", *args],
        check=True,
        capture_output=True,
        timeout=120,
    )


@dataclass
class Server:
    data: Path
    port: int

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def start(self, log: Path) -> None:
        _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-w", "start")

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        try:
            _as_postgres(str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        except subprocess.SubprocessError:
            os.kill(self.pid, 15)  # SIGTERM to the postmaster: a smart shutdown


def _configure(server: Server, root: Path, extra: str = "") -> None:
    with open(server.data / "postgresql.conf", "a") as conf:
        conf.write(
            f"\nport = {server.port}\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{root}'\nwal_level = replica\nmax_wal_senders = 5\n"
            f"fsync = off\nshared_buffers = 16MB\n{extra}"
        )
    with open(server.data / "pg_hba.conf", "w") as hba:
        hba.write(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
            "host replication all 127.0.0.1/32 trust\n"
        )


@contextmanager
def primary_and_replica(database: str) -> Iterator[tuple[Server, Server]]:
    """Start both, create ``database`` on the primary and wait until the replica has it."""
    root = Path(tempfile.mkdtemp(prefix="cs-pg-"))
    shutil.chown(root, "postgres", "postgres")
    primary = Server(root / "primary", _free_port())
    replica = Server(root / "replica", _free_port())
    started: list[Server] = []
    try:
        _as_postgres(str(BIN / "initdb"), "-D", str(primary.data), "-A", "trust", "-U", "postgres")
        _configure(primary, root)
        primary.start(root / "primary.log")
        started.append(primary)
        _as_postgres(
            str(BIN / "pg_basebackup"),
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(replica.data), "-R", "-X", "stream"),
        )
        _configure(replica, root, f"hot_standby = on\nrecovery_min_apply_delay = '{APPLY_DELAY}'\n")
        replica.start(root / "replica.log")
        started.append(replica)
        _as_postgres(
            str(BIN / "createdb"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            database,
        )
        _wait_for(replica, database)
        yield primary, replica
    finally:
        for server in reversed(started):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _wait_for(replica: Server, database: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            _as_postgres(
                str(BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(replica.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-c",
                "SELECT 1",
            )
            return
        except subprocess.CalledProcessError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_replayed(primary_alias: str, replica_alias: str, timeout: float = 10.0) -> None:
    """Wait until the replica has applied everything the primary has committed so far."""
    from django.db import connections

    with connections[primary_alias].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn()")
        (target,) = cursor.fetchone()
    deadline = time.monotonic() + timeout
    with connections[replica_alias].cursor() as cursor:
        while True:
            cursor.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target])
            if cursor.fetchone()[0]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the replica did not catch up")
            time.sleep(0.05)


@contextmanager
def replay_paused(replica_alias: str) -> Iterator[None]:
    """The replica applies nothing until the block ends, however slow the test runs: what it
    serves inside is older than any commit made inside."""
    from django.db import connections

    with connections[replica_alias].cursor() as cursor:
        cursor.execute("SELECT pg_wal_replay_pause()")
    try:
        yield
    finally:
        with connections[replica_alias].cursor() as cursor:
            cursor.execute("SELECT pg_wal_replay_resume()")
