"""What one SQL write does to cached tables, read from its text alone (no database, no models)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import sqlclauses as clauses
from .sqlclauses import Table
from .sqllex import Name, Token, names, rough_names, split, table_name, tokens

__all__ = ["Outcome", "Table", "Tables", "classify", "mentioned"]


class Tables:
    """The tables to watch, found by the last part of their name; remembers the shapes of
    the statements it has read (Django sends the same text again with other parameters)."""

    LIMIT = 1024  # statement texts remembered
    LONGEST = 8192  # longer texts (bulk statements) are read again each time

    def __init__(self, tables: Iterable[Table]) -> None:
        self.by_table = {t.db_table: t for t in tables}
        self._by_last: dict[str, list[tuple[Name, Table]]] = {}
        for table in self.by_table.values():
            name = table_name(table.db_table)
            self._by_last.setdefault(name[-1], []).append((name, table))
        self.shapes: dict[tuple[str, bool, bool, bool], Outcome] = {}

    @property
    def last_names(self) -> list[str]:
        return sorted(self._by_last)

    def resolve(self, name: Name) -> list[str]:
        """The tables ``name`` may be: the last parts must match; a schema only where both
        sides give one (an unqualified name may be any schema on the search path)."""
        return [
            table.db_table
            for own, table in self._by_last.get(name[-1], ())
            if len(name) == 1 or len(own) == 1 or name[-2] == own[-2]
        ]


Action = Literal["untouched", "returning", "returned", "shape", "inserted", "flush"]


@dataclass(frozen=True)
class Outcome:
    """What to do around one statement.

    ``action`` says how the target's changed rows are named: ``returning`` (run ``sql``,
    which returns the pk then the ``lookups`` columns), ``returned`` (the statement's own
    ``RETURNING`` holds the pk at ``pk_index``), ``shape`` (``pks`` read from the
    parameters), ``inserted`` (new rows only; their pks at ``pk_index`` when returned),
    ``flush`` (they cannot be named), ``untouched``.
    """

    action: Action
    kind: str = ""  # update, delete, insert, merge, truncate, write (any other write)
    target: str | None = None  # db_table written
    sql: str | None = None
    lookups: tuple[str, ...] = ()
    pk_index: int | None = None
    pks: tuple[Any, ...] = ()
    values: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # lookup -> new values
    lookup_changed: bool = False  # a lookup column is set to a value not known here
    upsert: bool = False
    flushed: frozenset[str] = frozenset()  # other tables whose rows may have changed
    cascade: bool = False  # TRUNCATE ... CASCADE
    # How "shape" reads the parameters: the pks' first index and count, each lookup's
    # index, how many a row has, and what to do when they do not fit.
    pk_params: tuple[int, int] = (0, 0)
    value_params: tuple[tuple[str, int], ...] = ()
    param_count: int = 0
    otherwise: Action = "flush"


UNTOUCHED = Outcome("untouched")


def classify(
    sql: str,
    params: Any,
    tables: Tables,
    *,
    many: bool = False,
    returning: bool = True,
    qualify: bool = True,
) -> Outcome:
    """What ``sql`` (run with ``params``) writes among ``tables``, and how to learn its rows.

    ``returning``: the database accepts ``RETURNING``; ``qualify``: it accepts table-qualified
    columns there. A statement that cannot be read safely names every known table it
    mentions in ``flushed``.
    """
    key = (sql, many, returning, qualify)
    shape = tables.shapes.get(key)
    if shape is None:
        shape = _shape(sql, tables, many, returning, qualify)
        if len(sql) <= tables.LONGEST:
            if len(tables.shapes) >= tables.LIMIT:
                tables.shapes.clear()
            tables.shapes[key] = shape
    return _bind(shape, params, many) if shape.action == "shape" else shape


def _shape(sql: str, tables: Tables, many: bool, returning: bool, qualify: bool) -> Outcome:
    found = tokens(sql)
    if found is None:
        return _mentioned(rough_names(sql), tables)
    statements = split(found)
    if len(statements) != 1:
        return _mentioned(found, tables)
    body = statements[0]
    if body[0].is_word("update", "delete", "insert", "merge"):
        return _write(sql, body, tables, many, returning, qualify)
    if body[0].is_word("truncate"):
        return _truncate(body, tables)
    if any(_is_write_word(body, i) for i in range(len(body))):  # WITH ... UPDATE and the like
        return _mentioned(body, tables)
    return UNTOUCHED


def _bind(shape: Outcome, params: Any, many: bool) -> Outcome:
    """A ``shape`` outcome with the pks and lookup values of these parameters."""
    rows = _param_rows(params, many)
    if rows is None or any(len(row) != shape.param_count for row in rows):
        return dataclasses.replace(shape, action=shape.otherwise)
    first, count = shape.pk_params
    pks = tuple(v for row in rows for v in row[first : first + count])
    values = {c: tuple(row[i] for row in rows) for c, i in shape.value_params}
    return dataclasses.replace(shape, pks=pks, values=values)


def _param_rows(params: Any, many: bool) -> list[Sequence[Any]] | None:
    def is_row(value: Any) -> bool:
        return isinstance(value, Sequence) and not isinstance(value, (str, bytes))

    if not many:
        return [params] if is_row(params) else None
    rows = list(params) if is_row(params) else []
    return rows if rows and all(is_row(r) for r in rows) else None


def mentioned(sql: str, tables: Tables) -> Outcome:
    """Flush every table the text names: what is left when a statement cannot be read."""
    found = tokens(sql)
    return _mentioned(rough_names(sql) if found is None else found, tables)


def _mentioned(found: list[Token], tables: Tables) -> Outcome:
    named = {t for name, _, _ in names(found) for t in tables.resolve(name)}
    if not named:
        return UNTOUCHED
    return Outcome("flush", kind="write", flushed=frozenset(named))


def _truncate(body: list[Token], tables: Tables) -> Outcome:
    named = {t for name, _, _ in names(body[1:]) for t in tables.resolve(name)}
    cascade = any(t.is_word("cascade") for t in body)
    if not named:
        return UNTOUCHED
    return Outcome("flush", kind="truncate", flushed=frozenset(named), cascade=cascade)


def _write(
    sql: str, body: list[Token], tables: Tables, many: bool, returning: bool, qualify: bool
) -> Outcome:
    kind = body[0].text
    span = clauses.target(body)
    if span is None:
        return _mentioned(body, tables)
    name = tuple(t.text for t in body[span[0] : span[1] : 2])
    found = tables.resolve(name)
    if len(found) != 1:  # unknown, or one name for tables of several schemas
        return _mentioned(body, tables) if found else UNTOUCHED
    table = tables.by_table[found[0]]
    alias = clauses.alias(body, span[1], kind)
    qualifiers = {name[-1], *((alias.text,) if alias else ())}
    own = clauses.own_returning(body, qualifiers)
    pk_index = own.index(table.pk) if own and table.pk in own else None
    base = Outcome("untouched", kind=kind, target=table.db_table, pk_index=pk_index)
    if not table.cached:
        return base
    if kind in ("insert", "merge"):
        upsert = kind == "merge" or clauses.is_upsert(body)
        action: Action = "flush" if upsert else "inserted"
        return dataclasses.replace(
            base, action=action, upsert=upsert, pk_index=None if many else pk_index
        )
    if table.pk is None:
        return dataclasses.replace(base, action="flush")
    lookups = table.lookups if kind == "update" else ()
    if returning and not many and own is None:
        written = sql[body[span[0]].start : body[span[1] - 1].end]
        qualifier = (clauses.quote(alias) if alias is not None else written) if qualify else None
        rewritten = clauses.with_returning(sql, body, qualifier, table, lookups)
        if rewritten is not None:
            return dataclasses.replace(base, action="returning", sql=rewritten, lookups=lookups)
    otherwise: Action = "returned" if pk_index is not None and not many else "flush"
    changed = any(t.kind in ("word", "ident") and t.text in lookups for t in body)
    shaped = clauses.pk_params(body, table.pk, qualifiers)
    if shaped is None:
        return dataclasses.replace(base, action=otherwise, lookup_changed=changed)
    value_params, changed = clauses.lookup_params(body, lookups)
    return dataclasses.replace(
        base,
        action="shape",
        pk_params=shaped,
        value_params=value_params,
        lookup_changed=changed,
        param_count=sum(1 for t in body if t.kind == "param"),
        otherwise=otherwise,
    )


def _is_write_word(body: list[Token], i: int) -> bool:
    token = body[i]
    if not token.is_word("update", "delete", "insert", "merge", "truncate"):
        return False
    before = body[i - 1] if i else None
    # FOR UPDATE, FOR NO KEY UPDATE: a row lock, not a write
    return not (before is not None and before.is_word("for", "key"))
