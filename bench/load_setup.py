"""Set-up of the load benchmark: wrk, the database and its profiles, the Redis keys."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql

from bench import settings as bench_settings

ROOT = Path(__file__).resolve().parent.parent

#: Redis keys the served project writes in the benchmark's Redis database: our namespace of
#: Profile, the statistics our app publishes, and cacheops' keys (its prefix is set).
OWN_PATTERNS = ("cs:accounts.profile:*", "cs:stats:*", "cacheops:*")

#: The database used when ``BENCH_DATABASE`` is not set.
DEFAULT_NAME = "cachestrat_load"

WORDS = [
    "cache",
    "redis",
    "django",
    "model",
    "row",
    "lease",
    "query",
    "latency",
    "replica",
    "index",
    "payload",
]


@dataclass(frozen=True)
class Database:
    """The benchmark's PostgreSQL database (``BENCH_DATABASE``)."""

    config: dict[str, Any]

    @classmethod
    def from_settings(cls) -> Database:
        """``BENCH_DATABASE``'s database; by default ``DEFAULT_NAME``, not the other benchmarks'
        ``cachestrat_bench``, since this one drops and re-creates the whole database."""
        config = dict(bench_settings.DATABASES["default"])
        if not os.environ.get("BENCH_DATABASE"):
            config["NAME"] = DEFAULT_NAME
        return cls(config)

    def copy(self, suffix: str) -> Database:
        """The same server's database named ``<name>_<suffix>``."""
        return Database({**self.config, "NAME": f"{self.name}_{suffix}"})

    @property
    def name(self) -> str:
        return str(self.config["NAME"])

    @property
    def url(self) -> str:
        """The ``postgres://`` URL the example project's ``DATABASE_URL`` takes."""
        c = self.config
        auth = quote(c.get("USER", ""), safe="")
        if c.get("PASSWORD"):
            auth += ":" + quote(c["PASSWORD"], safe="")
        return f"postgres://{auth}@{c['HOST']}:{c['PORT']}/{quote(self.name, safe='')}"

    def connect(self, dbname: str | None = None) -> psycopg.Connection[Any]:
        c = self.config
        return psycopg.connect(
            dbname=dbname or self.name,
            user=c.get("USER") or None,
            password=c.get("PASSWORD") or None,
            host=c.get("HOST") or None,
            port=c.get("PORT") or None,
            autocommit=True,
        )


def ensure_wrk() -> str:
    """The path of ``wrk``: Debian's package, installed here if missing and we are root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("== installing wrk (Debian package)", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "wrk"]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
        found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is not installed: run `apt-get install wrk` as root, then again")
    return found


def recreate(db: Database, template: Database | None = None) -> None:
    """Drop and create a database, empty or as a copy of ``template`` (through ``postgres``)."""
    with db.connect("postgres") as conn:
        name = sql.Identifier(db.name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        if template is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
        else:
            copy = sql.SQL("CREATE DATABASE {} TEMPLATE {}")
            conn.execute(copy.format(name, sql.Identifier(template.name)))


def migrate(env: dict[str, str]) -> None:
    cmd = [sys.executable, str(ROOT / "manage.py"), "migrate", "-v", "0"]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)


def usernames(count: int) -> list[str]:
    return [f"user{n:05d}" for n in range(count)]


def seed(db: Database, names: list[str]) -> None:
    """One profile per name, with a bio of a few dozen words; then VACUUM ANALYZE."""
    rng = random.Random(7)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = [
        (
            name,
            name.replace("user", "User "),
            " ".join(rng.choices(WORDS, k=40)),
            start + timedelta(minutes=rng.randrange(10**6)),
            rng.randrange(10_000),
        )
        for name in names
    ]
    insert = (
        "INSERT INTO accounts_profile (username, display_name, bio, joined, karma) "
        "VALUES (%s, %s, %s, %s, %s)"
    )
    with db.connect() as conn:
        with conn.cursor() as cursor:
            cursor.executemany(insert, rows)
        # Nothing left for autovacuum, whose transactions would count as the app's queries.
        conn.execute("VACUUM ANALYZE")


def delete_own_keys(url: str) -> int:
    """Delete the keys of ``OWN_PATTERNS``, found with SCAN; the number deleted."""
    client = redis.Redis.from_url(url)
    deleted = 0
    try:
        for pattern in OWN_PATTERNS:
            batch = list(client.scan_iter(match=pattern, count=1000))
            for start in range(0, len(batch), 1000):
                deleted += int(client.delete(*batch[start : start + 1000]))
    finally:
        client.close()
    return deleted
