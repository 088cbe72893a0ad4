"""Writes made outside Django (PostgreSQL): triggers record each changed row of a cached table
in an outbox table; a consumer invalidates what they name, at least once.

A row trigger records the table, the operation and the old and new values of the pk and the
cached lookup columns (``to_jsonb`` of the row, cut to those columns); a statement trigger
records a TRUNCATE. The outbox row commits with the write, or not at all. The consumer takes
a batch (``FOR UPDATE SKIP LOCKED``, so consumers can run side by side), deletes the keys in
Redis, and deletes the batch in the same transaction: killed before its commit, it leaves the
batch to the next run, which invalidates again (harmless). Django's own writes are captured
too: they are invalidated twice, once by the app at commit and once by the consumer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, transaction

from . import invalidation, replicas, statements, tracing
from .conf import conf, replica_lag_ms
from .pending import pending, send_invalidations
from .topology import ReplicaLag

__all__ = ["consume", "consume_all", "install", "status", "uninstall"]

OUTBOX = "cachestrat_external_writes"
FUNCTION = "cachestrat_capture"
ROW_TRIGGER = "cachestrat_capture"
TRUNCATE_TRIGGER = "cachestrat_capture_truncate"

_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {OUTBOX} (
    id bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op char(1) NOT NULL,
    old_values jsonb,
    new_values jsonb,
    written_at timestamptz NOT NULL DEFAULT clock_timestamp()
)"""

# The table is recorded by its qualified name, as _QUALIFIED spells it: a db_table may name
# a schema ('"s"."t"') or hold a dot ('a.b'), and two schemas may hold one table name.
# TG_ARGV: the pk column, then the lookup columns. to_jsonb(row) cut to those columns.
_CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_values jsonb;
    new_values jsonb;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        INSERT INTO {OUTBOX} (table_name, op)
        VALUES (quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), 'T');
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN
        SELECT jsonb_object_agg(key, value) INTO old_values
        FROM jsonb_each(to_jsonb(OLD)) WHERE key = ANY(TG_ARGV);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT jsonb_object_agg(key, value) INTO new_values
        FROM jsonb_each(to_jsonb(NEW)) WHERE key = ANY(TG_ARGV);
    END IF;
    INSERT INTO {OUTBOX} (table_name, op, old_values, new_values)
    VALUES (quote_ident(TG_TABLE_SCHEMA) || '.' || quote_ident(TG_TABLE_NAME), left(TG_OP, 1),
            old_values, new_values);
    RETURN NULL;
END
$$"""


def _columns(model: type[models.Model]) -> list[str] | None:
    """The pk column, then the cached lookup columns of the table; None: no single pk."""
    pk = model._meta.pk
    if pk is None or model._meta.is_composite_pk or pk.column is None:
        return None
    lookups = [str(f.column) for f in statements._lookup_fields(model)]
    return [str(pk.column), *dict.fromkeys(lookups)]


def _captured_tables() -> dict[str, type[models.Model]]:
    return {t: m for t, m in statements.tables().items() if _columns(m) is not None}


def install(using: str) -> list[str]:
    """Create the outbox, the function and the triggers of every cached table (again: the
    triggers are replaced, so a new lookup is captured); return the tables."""
    conn = connections[using]
    if conn.vendor != "postgresql":
        raise ValueError(f"capturing outside writes needs PostgreSQL; {using!r} is {conn.vendor}")
    quote = conn.ops.quote_name
    tables = _captured_tables()
    with transaction.atomic(using=using), conn.cursor() as cursor:
        cursor.execute(_CREATE_TABLE)
        cursor.execute(_CREATE_FUNCTION)
        for table, model in sorted(tables.items()):
            columns = ", ".join(_literal(_columns(model)))
            cursor.execute(f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {quote(table)}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {quote(table)}")
            cursor.execute(
                f"CREATE TRIGGER {ROW_TRIGGER} AFTER INSERT OR UPDATE OR DELETE ON "
                f"{quote(table)} FOR EACH ROW EXECUTE FUNCTION {FUNCTION}({columns})"
            )
            cursor.execute(
                f"CREATE TRIGGER {TRUNCATE_TRIGGER} AFTER TRUNCATE ON {quote(table)} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {FUNCTION}()"
            )
    return sorted(tables)


def _literal(columns: list[str] | None) -> list[str]:
    # Trigger arguments are string literals: quote them as such.
    return ["'" + c.replace("'", "''") + "'" for c in columns or []]


def uninstall(using: str) -> list[str]:
    """Drop every capture trigger, the function and the outbox; return the tables."""
    conn = connections[using]
    with transaction.atomic(using=using), conn.cursor() as cursor:
        tables = _installed(cursor)
        for table in tables:  # qualified and quoted already
            cursor.execute(f"DROP TRIGGER IF EXISTS {ROW_TRIGGER} ON {table}")
            cursor.execute(f"DROP TRIGGER IF EXISTS {TRUNCATE_TRIGGER} ON {table}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {FUNCTION}()")
        cursor.execute(f"DROP TABLE IF EXISTS {OUTBOX}")
    return tables


_QUALIFIED = "quote_ident(n.nspname) || '.' || quote_ident(c.relname)"


def _installed(cursor: Any) -> list[str]:
    """The qualified names of the tables that have a capture trigger."""
    cursor.execute(
        f"SELECT DISTINCT {_QUALIFIED} FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE t.tgname IN (%s, %s) ORDER BY 1",
        [ROW_TRIGGER, TRUNCATE_TRIGGER],
    )
    return [name for (name,) in cursor.fetchall()]


def _qualified(cursor: Any, quote: Any) -> dict[str, type[models.Model]]:
    """Qualified table name (as the trigger records it) → model, for the captured tables
    that exist in this database."""
    found: dict[str, type[models.Model]] = {}
    for table, model in _captured_tables().items():
        cursor.execute(
            f"SELECT {_QUALIFIED} FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            [quote(table)],
        )
        row = cursor.fetchone()
        if row is not None:
            found[row[0]] = model
    return found


def status(using: str) -> dict[str, Any]:
    """What is installed, what is missing, and the backlog: rows and age of the oldest."""
    conn = connections[using]
    with conn.cursor() as cursor:
        cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [OUTBOX])
        (has_outbox,) = cursor.fetchone()
        installed = _installed(cursor)
        wanted = sorted(_qualified(cursor, conn.ops.quote_name))
        backlog, oldest = 0, None
        if has_outbox:
            cursor.execute(
                f"SELECT count(*), extract(epoch FROM clock_timestamp() - min(written_at)) "
                f"FROM {OUTBOX}"
            )
            backlog, oldest = cursor.fetchone()
    return {
        "outbox": bool(has_outbox),
        "tables": installed,
        "missing": [t for t in wanted if t not in installed],
        "backlog": int(backlog),
        "oldest_seconds": None if oldest is None else float(oldest),
    }


def consume(using: str, batch_size: int | None = None) -> int:
    """Invalidate what the outbox names until it is empty; return the rows consumed.

    A Redis error rises and leaves the batch in the outbox for the next run.
    """
    size = int(batch_size or conf.EXTERNAL_WRITES["BATCH_SIZE"])
    total = 0
    while True:
        done = _batch(using, size)
        total += done
        if done < size:
            return total


def consume_all() -> int:
    """:func:`consume` on every database of ``EXTERNAL_WRITES["DATABASES"]`` where the
    capture is installed. Named, not found: two aliases of one database would consume one
    outbox, each invalidating only its own keys."""
    total = 0
    for alias in conf.EXTERNAL_WRITES["DATABASES"]:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [OUTBOX])
            (has_outbox,) = cursor.fetchone()
        if has_outbox:
            total += consume(alias)
    return total


def _batch(using: str, size: int) -> int:
    with transaction.atomic(using=using), connections[using].cursor() as cursor:
        cursor.execute(
            f"SELECT id, table_name, op, old_values, new_values FROM {OUTBOX} "
            f"ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [size],
        )
        rows = cursor.fetchall()
        if not rows:
            return 0
        with tracing.span(
            "consume", attributes={"cachestrat.database": using, "cachestrat.rows": len(rows)}
        ):
            tables = _qualified(cursor, connections[using].ops.quote_name)
            keys, generations = _invalidations(rows, using, tables)
            lag_ms = replica_lag_ms(using)
            marks = replicas.marks(keys, generations) if lag_ms else ()
            if keys or generations:
                try:
                    send_invalidations(list(keys), list(generations), marks, lag_ms)
                except ReplicaLag as lag:  # the primary has them: the batch is done
                    pending.add_unconfirmed(lag)
        cursor.execute(f"DELETE FROM {OUTBOX} WHERE id = ANY(%s)", [[row[0] for row in rows]])
    return len(rows)


def _invalidations(
    rows: Iterable[tuple[Any, ...]], using: str, tables: dict[str, type[models.Model]]
) -> tuple[set[str], set[str]]:
    keys: set[str] = set()
    generations: set[str] = set()
    for _, table, op, old, new in rows:
        model = tables.get(table)
        plans = invalidation.family(model) if model is not None else []
        if not plans:
            continue  # no longer cached
        assert model is not None
        if op == "T":
            generations.update(p.space(using).generation for p in plans)
            continue
        try:
            # Django's PostgreSQL backend reads jsonb as text (its JSONField decodes it).
            named = [json.loads(v) if isinstance(v, str) else v for v in (old, new) if v]
            pks, values = _named(model, plans[0], named)
            keys |= invalidation._keys_for(plans, pks, values, using)
        except (TypeError, ValueError, ValidationError):  # a value naming no key: flush
            generations.update(p.space(using).generation for p in plans)
    return keys, generations


def _named(
    model: type[models.Model], plan: Any, rows: list[dict[str, Any]]
) -> tuple[list[Any], dict[str, list[Any]]]:
    """The pks and ``{lookup: values}`` that the old and new column values name."""
    pk_column = str(model._meta.pk.column)
    lookups = {str(f.column): f.name for f in statements._lookup_fields(model)}
    pks = [plan.clean_pk(row[pk_column]) for row in rows if row.get(pk_column) is not None]
    values: dict[str, list[Any]] = {}
    for row in rows:
        for column, name in lookups.items():
            if row.get(column) is not None:
                values.setdefault(name, []).append(row[column])
    return pks, values


def wait_interval() -> None:
    time.sleep(float(conf.EXTERNAL_WRITES["INTERVAL"]))
