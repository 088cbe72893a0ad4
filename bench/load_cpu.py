"""CPU time from /proc: the served project's worker processes, PostgreSQL's sessions."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bench.load_setup import Database

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after the last one.
    return text[text.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (gunicorn's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and int(stat[1]) == pid:
            found.append(int(entry.name))
    return found


def cpu_seconds(pids: list[int]) -> dict[int, float]:
    """User plus system CPU time of each process (all its threads) that still exists."""
    out = {}
    for pid in pids:
        if stat := _stat(pid):
            out[pid] = (int(stat[11]) + int(stat[12])) / TICKS
    return out


def sessions(db: Database) -> list[int]:
    """The server processes of the database's sessions (readable as root, or as postgres)."""
    with db.connect("postgres") as conn:
        query = "SELECT pid FROM pg_stat_activity WHERE datname = %s"
        return [int(row[0]) for row in conn.execute(query, [db.name]).fetchall()]


@dataclass
class CpuMeter:
    """CPU spent by one server's workers and by its database's sessions between two reads."""

    server_pid: int
    db: Database
    before: tuple[dict[int, float], dict[int, float]] = field(default=({}, {}))

    def read(self) -> tuple[dict[int, float], dict[int, float]]:
        return cpu_seconds(children(self.server_pid)), cpu_seconds(sessions(self.db))

    def start(self) -> None:
        self.before = self.read()

    def stop(self) -> tuple[float, float]:
        """Seconds of CPU (app, database) since ``start``; processes new since count whole."""
        after = self.read()
        app, pg = (
            sum(t - b.get(pid, 0.0) for pid, t in a.items())
            for a, b in zip(after, self.before, strict=True)
        )
        return app, pg
