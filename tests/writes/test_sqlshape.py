"""What the statement capture makes of each SQL shape, table by table (no database)."""

from __future__ import annotations

from typing import Any

import pytest

from django_cachestrat.sqllex import head, table_name
from django_cachestrat.sqlshape import Outcome, Table, Tables, classify, mentioned

TABLES = Tables(
    [
        Table("testapp_profile", "id", ("username",)),
        Table("testapp_team", "id"),
        Table("testapp_comment", "id"),
        Table("testapp_membership", "id", ("key",)),
        Table('"cachestrat_schema"."schemed"', "id"),
        Table("testapp.dotted", "id"),
        Table("composite", None),
        Table("dbcascade_author", "id", cached=False),  # only its cascades matter
    ]
)

P = '"testapp_profile"'
PK = f'{P}."id"'
COLUMNS = f'RETURNING {PK}, {P}."username"'


def summary(outcome: Outcome) -> tuple[Any, ...]:
    """The part of an outcome a row of the table states."""
    if outcome.action == "returning":
        assert outcome.sql is not None
        return ("returning", outcome.target, outcome.sql.rpartition(" RETURNING ")[2])
    if outcome.action == "shape":
        return ("shape", outcome.target, outcome.pks, dict(outcome.values))
    if outcome.action in ("returned", "inserted"):
        return (outcome.action, outcome.target, outcome.pk_index)
    if outcome.action == "flush":
        return ("flush", outcome.target or tuple(sorted(outcome.flushed)))
    return (outcome.action, outcome.kind, outcome.target)


def _returning(columns: str) -> str:
    return columns.removeprefix("RETURNING ")


# (SQL, params, expected) for what Django itself sends to PostgreSQL.
DJANGO = [
    pytest.param(
        f'INSERT INTO {P} ("username", "age") VALUES (%s, %s) RETURNING {PK}',
        ["u", 1],
        ("inserted", "testapp_profile", 0),
        id="save-insert",
    ),
    pytest.param(
        f'UPDATE {P} SET "username" = %s, "age" = %s WHERE {PK} = %s',
        ["u", 2, 7],
        ("returning", "testapp_profile", _returning(COLUMNS)),
        id="save-update",
    ),
    pytest.param(
        f'UPDATE {P} SET "username" = %s, "age" = ({P}."age" + %s) WHERE {PK} = %s'
        f' RETURNING {P}."age"',
        ["u", 1, 7],
        ("shape", "testapp_profile", (7,), {"username": ("u",)}),
        id="save-update-with-F-django-6.1",
    ),
    pytest.param(
        f'UPDATE {P} SET "age" = ({P}."age" + %s) WHERE {P}."age" < %s',
        [1, 10],
        ("returning", "testapp_profile", _returning(COLUMNS)),
        id="queryset-update",
    ),
    pytest.param(
        f'UPDATE {P} SET "age" = %s WHERE {PK} IN (SELECT U0."id" FROM {P} U0'
        ' INNER JOIN "testapp_team" U1 ON (U0."team_id" = U1."id") WHERE U1."name" = %s)',
        [1, "x"],
        ("returning", "testapp_profile", _returning(COLUMNS)),
        id="queryset-update-through-a-join",
    ),
    pytest.param(
        f"DELETE FROM {P} WHERE {PK} IN (%s, %s)",
        [1, 2],
        ("returning", "testapp_profile", PK),
        id="delete",
    ),
    pytest.param(
        'DELETE FROM "testapp_comment" WHERE "testapp_comment"."id" IN (%s)',
        [1],
        ("returning", "testapp_comment", '"testapp_comment"."id"'),
        id="cascade-delete",
    ),
    pytest.param(
        f'UPDATE {P} SET "team_id" = NULL WHERE {P}."team_id" IN (%s)',
        [1],
        ("returning", "testapp_profile", _returning(COLUMNS)),
        id="set-null",
    ),
    pytest.param(
        f'INSERT INTO {P} ("username") VALUES (%s), (%s) RETURNING {PK}',
        ["a", "b"],
        ("inserted", "testapp_profile", 0),
        id="bulk-create",
    ),
    pytest.param(
        f'INSERT INTO {P} ("username") SELECT * FROM UNNEST((%s)::varchar[]) RETURNING {PK}',
        [["a", "b"]],
        ("inserted", "testapp_profile", 0),
        id="bulk-create-unnest",
    ),
    pytest.param(
        f'INSERT INTO {P} ("username", "age") VALUES (%s, %s) ON CONFLICT("username")'
        f' DO UPDATE SET "age" = EXCLUDED."age" RETURNING {PK}',
        ["a", 1],
        ("flush", "testapp_profile"),
        id="bulk-create-upsert",
    ),
    pytest.param(
        f'INSERT INTO {P} ("username") VALUES (%s) ON CONFLICT DO NOTHING',
        ["a"],
        ("inserted", "testapp_profile", None),
        id="bulk-create-ignore-conflicts",
    ),
    pytest.param(
        f'UPDATE {P} SET "age" = (CASE WHEN ({PK} = %s) THEN %s WHEN ({PK} = %s) THEN %s'
        f" ELSE NULL END)::integer WHERE {PK} IN (%s, %s)",
        [1, 9, 2, 9, 1, 2],
        ("returning", "testapp_profile", _returning(COLUMNS)),
        id="bulk-update",
    ),
    pytest.param(
        'INSERT INTO "testapp_membership" ("club_id", "profile_id", "key") VALUES (%s, %s, %s)'
        ' RETURNING "testapp_membership"."id"',
        [1, 1, "k"],
        ("inserted", "testapp_membership", 0),
        id="m2m-add-through-model",
    ),
    pytest.param(
        'DELETE FROM "testapp_membership" WHERE "testapp_membership"."id" IN (%s)',
        [1],
        ("returning", "testapp_membership", '"testapp_membership"."id"'),
        id="m2m-remove-through-model",
    ),
    pytest.param(
        'INSERT INTO "testapp_profile_tags" ("profile_id", "tag_id") VALUES (%s, %s)'
        " ON CONFLICT DO NOTHING",
        [1, 1],
        ("untouched", "", None),
        id="m2m-add-uncached-through",
    ),
    pytest.param(
        'TRUNCATE "testapp_team", "testapp_comment" RESTART IDENTITY CASCADE;',
        None,
        ("flush", ("testapp_comment", "testapp_team")),
        id="flush-command-truncate",
    ),
]

# Raw SQL: what the wrapper accepts, and what it refuses and flushes instead.
RAW = [
    pytest.param(
        "UPDATE testapp_profile SET age = 1 FROM testapp_team"
        " WHERE testapp_profile.team_id = testapp_team.id",
        None,
        ("returning", "testapp_profile", 'testapp_profile."id", testapp_profile."username"'),
        id="update-from",
    ),
    pytest.param(
        "DELETE FROM testapp_profile AS p USING testapp_team t WHERE p.team_id = t.id",
        None,
        ("returning", "testapp_profile", '"p"."id"'),
        id="delete-using-alias",
    ),
    pytest.param(
        "UPDATE testapp_profile SET age = 1 WHERE id = %s -- why; RETURNING x",
        [1],
        ("returning", "testapp_profile", 'testapp_profile."id", testapp_profile."username"'),
        id="trailing-line-comment",
    ),
    pytest.param(
        "UPDATE testapp_profile SET age = 1 WHERE id = %s /* 100%% */",
        [1],
        ("shape", "testapp_profile", (1,), {}),  # the statement runs as written
        id="placeholder-like-trailing-comment",
    ),
    pytest.param(
        "UPDATE testapp_profile SET bio = 'a; DELETE FROM testapp_team' WHERE id = 1;",
        None,
        ("returning", "testapp_profile", 'testapp_profile."id", testapp_profile."username"'),
        id="semicolon-in-a-string",
    ),
    pytest.param(
        "UPDATE testapp_profile SET age = 1; DELETE FROM testapp_team",
        None,
        ("flush", ("testapp_profile", "testapp_team")),
        id="two-statements",
    ),
    pytest.param(
        "UPDATE public.testapp_profile SET age = 1",
        None,
        (
            "returning",
            "testapp_profile",
            'public.testapp_profile."id", public.testapp_profile."username"',
        ),
        id="schema-qualified",
    ),
    pytest.param(
        "UPDATE ONLY testapp_profile SET age = 1",
        None,
        ("returning", "testapp_profile", 'testapp_profile."id", testapp_profile."username"'),
        id="update-only",
    ),
    pytest.param(
        "update TestApp_Profile set AGE = 1 where ID = %s",
        [3],
        ("returning", "testapp_profile", 'TestApp_Profile."id", TestApp_Profile."username"'),
        id="unquoted-mixed-case",
    ),
    pytest.param(
        'UPDATE "TESTAPP_PROFILE" SET age = 1',
        None,
        ("untouched", "", None),
        id="quoted-upper-case-is-another-table",
    ),
    pytest.param(
        'UPDATE "cachestrat_schema"."schemed" SET name = %s WHERE id = %s',
        ["x", 1],
        ("returning", '"cachestrat_schema"."schemed"', '"cachestrat_schema"."schemed"."id"'),
        id="db-table-in-a-schema",
    ),
    pytest.param(
        'DELETE FROM "testapp.dotted" WHERE id = %s',
        [1],
        ("returning", "testapp.dotted", '"testapp.dotted"."id"'),
        id="db-table-with-a-dot",
    ),
    pytest.param(
        "MERGE INTO testapp_profile p USING src s ON p.id = s.id"
        " WHEN MATCHED THEN UPDATE SET age = s.age",
        None,
        ("flush", "testapp_profile"),
        id="merge",
    ),
    pytest.param(
        "INSERT INTO testapp_team (id, name) VALUES (%s, %s) ON CONFLICT (id) DO\n"
        "  UPDATE SET name = EXCLUDED.name",
        [1, "x"],
        ("flush", "testapp_team"),
        id="upsert-over-two-lines",
    ),
    pytest.param(
        "WITH d AS (DELETE FROM testapp_profile RETURNING id) SELECT count(*) FROM d",
        None,
        ("flush", ("testapp_profile",)),
        id="write-in-a-cte",
    ),
    pytest.param(
        "WITH t AS (SELECT id FROM testapp_profile) SELECT * FROM t",
        None,
        ("untouched", "", None),
        id="read-in-a-cte",
    ),
    pytest.param(
        "/* hint */ SELECT * FROM testapp_profile FOR NO KEY UPDATE",
        None,
        ("untouched", "", None),
        id="commented-select-for-update",
    ),
    pytest.param(
        "UPDATE testapp_plain SET title = 'x'",
        None,
        ("untouched", "", None),
        id="uncached-table",
    ),
    pytest.param(
        "UPDATE testapp_profile SET bio = 'unterminated",
        None,
        ("flush", ("testapp_profile",)),
        id="does-not-lex",
    ),
    pytest.param(
        "UPDATE composite SET x = 1",
        None,
        ("flush", "composite"),
        id="composite-pk",
    ),
    pytest.param(
        "DELETE FROM dbcascade_author WHERE id = %s",
        [1],
        ("untouched", "delete", "dbcascade_author"),
        id="delete-of-an-uncached-parent",
    ),
    pytest.param(
        "TRUNCATE ONLY testapp_team",
        None,
        ("flush", ("testapp_team",)),
        id="truncate-only",
    ),
    pytest.param(
        "UPDATE testapp_profile AS p SET age = 1 WHERE p.id = %s RETURNING p.id, p.age",
        [4],
        ("shape", "testapp_profile", (4,), {}),
        id="own-returning-with-pk-shape",
    ),
    pytest.param(
        "UPDATE testapp_profile SET age = 1 WHERE age > %s RETURNING age, id",
        [4],
        ("returned", "testapp_profile", 1),
        id="own-returning-with-pk",
    ),
    pytest.param(
        "UPDATE testapp_profile SET age = 1 WHERE age > %s RETURNING age",
        [4],
        ("flush", "testapp_profile"),
        id="own-returning-without-pk",
    ),
]


@pytest.mark.parametrize(("sql", "params", "expected"), DJANGO + RAW)
def test_postgresql(sql: str, params: Any, expected: tuple[Any, ...]) -> None:
    assert summary(classify(sql, params, TABLES)) == expected


# Where RETURNING cannot be added (another database, or a psycopg Composed statement).
WITHOUT_RETURNING = [
    pytest.param(
        f'UPDATE {P} SET "username" = %s, "age" = %s WHERE {PK} = %s',
        ["u", 2, 7],
        ("shape", "testapp_profile", (7,), {"username": ("u",)}),
        id="save-update",
    ),
    pytest.param(
        f'UPDATE {P} SET "username" = UPPER("username") WHERE {PK} = %s',
        [7],
        ("shape", "testapp_profile", (7,), {}),
        id="lookup-set-to-an-expression",
    ),
    pytest.param(
        f"DELETE FROM {P} WHERE {PK} IN (%s, %s, %s)",
        [1, 2, 3],
        ("shape", "testapp_profile", (1, 2, 3), {}),
        id="delete-by-pks",
    ),
    pytest.param(
        f'UPDATE {P} SET "age" = %s WHERE {P}."age" < %s',
        [1, 2],
        ("flush", "testapp_profile"),
        id="update-by-filter",
    ),
]


@pytest.mark.parametrize(("sql", "params", "expected"), WITHOUT_RETURNING)
def test_without_returning(sql: str, params: Any, expected: tuple[Any, ...]) -> None:
    assert summary(classify(sql, params, TABLES, returning=False)) == expected


def test_a_lookup_set_to_an_expression_voids_absences() -> None:
    sql = f'UPDATE {P} SET "username" = UPPER("username") WHERE {PK} = %s'
    assert classify(sql, [7], TABLES, returning=False).lookup_changed


def test_executemany_reads_the_pk_of_every_parameter_row() -> None:
    sql = 'UPDATE "testapp_team" SET "name" = %s WHERE "testapp_team"."id" = %s'
    outcome = classify(sql, [["a", 1], ["b", 2]], TABLES, many=True)
    assert summary(outcome) == ("shape", "testapp_team", (1, 2), {})


def test_sqlite_keeps_bare_columns_and_refuses_a_join() -> None:
    plain = classify("DELETE FROM testapp_team WHERE name = %s", ["x"], TABLES, qualify=False)
    assert summary(plain) == ("returning", "testapp_team", '"id"')
    joined = "UPDATE testapp_team SET name = 'x' FROM testapp_profile WHERE age > 1"
    assert summary(classify(joined, None, TABLES, qualify=False)) == ("flush", "testapp_team")


@pytest.mark.parametrize(
    ("db_table", "name"),
    [
        ("testapp_profile", ("testapp_profile",)),
        ("a.b", ("a.b",)),
        ("MixedCase", ("MixedCase",)),
        ('"myschema"."t"', ("myschema", "t")),
        ('"we""ird"', ('we"ird',)),
    ],
)
def test_table_names_are_read_as_django_quotes_them(db_table: str, name: tuple[str, ...]) -> None:
    assert table_name(db_table) == name


@pytest.mark.parametrize(
    ("sql", "start"),
    [
        ("  update t", "UPDATE T"),
        ("-- note\n  DELETE FROM t", "DELETE F"),
        ("/* a /* nested */ comment */ INSERT INTO t", "INSERT I"),
        ("/* a */ -- b\n SELECT 1", "SELECT 1"),
        ("-- only a comment", ""),
        ("/* unclosed", ""),
    ],
)
def test_head_skips_leading_comments(sql: str, start: str) -> None:
    assert head(sql) == start


@pytest.mark.parametrize(
    ("sql", "flushed"),
    [
        (
            "UPDATE testapp_profile SET team_id = NULL FROM testapp_team",
            {"testapp_profile", "testapp_team"},
        ),
        ("UPDATE testapp_profile SET bio = 'open", {"testapp_profile"}),
        ("UPDATE testapp_plain SET title = 'x'", set()),
    ],
)
def test_what_is_left_when_a_statement_cannot_be_read(sql: str, flushed: set[str]) -> None:
    assert set(mentioned(sql, TABLES).flushed) == flushed
