"""What capturing outside writes costs a write: ``python -m bench.external_writes``.

Makes a scratch database on the local PostgreSQL (``cs_bench_external``, dropped at the end)
with two equal tables, one with the capture trigger, and times single-row UPDATEs
(interleaved, medians) and one 1000-row UPDATE on each.
"""

from __future__ import annotations

import os
import statistics
import time

import psycopg

DATABASE = "cs_bench_external"


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    from django_cachestrat import external

    server = {"host": os.environ.get("PGHOST", "127.0.0.1"), "user": "postgres"}
    with psycopg.connect(**server, dbname="postgres", autocommit=True) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        admin.execute(f"CREATE DATABASE {DATABASE}")
        try:
            with psycopg.connect(**server, dbname=DATABASE, autocommit=True) as conn:
                _bench(conn, external._CREATE_TABLE, external._CREATE_FUNCTION)
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {DATABASE}")


def _bench(conn: psycopg.Connection, create_table: str, create_function: str) -> None:
    conn.execute(create_table)
    conn.execute(create_function)
    for table in ("plain", "captured"):
        conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, username text UNIQUE, age int)")
        conn.execute(
            f"INSERT INTO {table} (username, age) "
            f"SELECT 'u' || i, 0 FROM generate_series(1, 1000) i"
        )
    conn.execute(
        "CREATE TRIGGER cachestrat_capture AFTER INSERT OR UPDATE OR DELETE ON captured "
        "FOR EACH ROW EXECUTE FUNCTION cachestrat_capture('id', 'username')"
    )
    times: dict[str, list[float]] = {"plain": [], "captured": []}
    for round_ in range(10):
        for table in ("plain", "captured") if round_ % 2 else ("captured", "plain"):
            for pk in range(1, 301):
                start = time.perf_counter()
                conn.execute(f"UPDATE {table} SET age = age + 1 WHERE id = %s", [pk])
                times[table].append((time.perf_counter() - start) * 1e6)
    bulk = {}
    for table in ("plain", "captured"):
        start = time.perf_counter()
        conn.execute(f"UPDATE {table} SET age = age + 1")
        bulk[table] = (time.perf_counter() - start) * 1000
    print(f"{'table':<10} {'1-row UPDATE µs':>16} {'1000-row UPDATE ms':>19}")
    for table in ("plain", "captured"):
        print(f"{table:<10} {statistics.median(times[table]):>16.0f} {bulk[table]:>19.1f}")


if __name__ == "__main__":
    main()
