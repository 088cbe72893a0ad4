"""What one SQL write does to cached tables, read from its text alone (no database, no models)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Outcome", "Table", "classify", "table_name"]

Name = tuple[str, ...]  # identifier parts, folded the way PostgreSQL folds them

_TOKEN = re.compile(
    r"""(?P<space>\s+)
    |(?P<line>--[^\n]*)
    |(?P<block>/\*)
    |(?P<ident>"(?:[^"]|"")*")
    |(?P<estr>[Ee]'(?:[^'\\]|''|\\.)*')
    |(?P<str>'(?:[^']|'')*')
    |(?P<dollar>\$(?:[A-Za-z_]\w*)?\$)
    |(?P<pct>%%)
    |(?P<param>%(?:\([^)]*\))?[sbt])
    |(?P<word>[A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)
    |(?P<num>\d[\w.]*)
    |(?P<punct>[(),;.*=])
    |(?P<op>[^\s"'])""",
    re.VERBOSE | re.DOTALL,
)
_COMMENT_MARK = re.compile(r"/\*|\*/")
_SKIPPED = frozenset({"space", "line", "block", "dollar"})


@dataclass(frozen=True)
class Token:
    kind: str  # word (folded), ident (quoted, exact), str, param, num, punct, op
    text: str
    start: int
    end: int
    depth: int  # parenthesis depth

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text in words


def _tokens(sql: str) -> list[Token] | None:
    """The significant tokens of ``sql``, or None when it does not lex (an open quote)."""
    tokens: list[Token] = []
    depth, pos = 0, 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        if match is None:  # an unterminated quoted identifier or string
            return None
        kind, text = str(match.lastgroup), match.group()
        end = match.end()
        if kind == "block":
            end = _block_end(sql, end)
        elif kind == "dollar":
            close = sql.find(text, end)
            end = len(sql) + 1 if close < 0 else close + len(text)
        if end > len(sql):
            return None
        if kind == "pct":
            kind = "op"
        if kind not in _SKIPPED:
            if text == ")":
                depth -= 1
            tokens.append(Token(kind, _fold(kind, text), match.start(), end, depth))
            if text == "(":
                depth += 1
        elif kind == "dollar":
            tokens.append(Token("str", text, match.start(), end, depth))
        pos = end
    return tokens


def _block_end(sql: str, pos: int) -> int:
    """The end of a ``/* ... */`` comment; PostgreSQL lets them nest."""
    level = 1
    while level:
        found = _COMMENT_MARK.search(sql, pos)
        if found is None:
            return len(sql) + 1
        level += 1 if found.group() == "/*" else -1
        pos = found.end()
    return pos


def _fold(kind: str, text: str) -> str:
    if kind == "word":
        return text.lower()  # unquoted names are folded to lower case
    if kind == "ident":
        return text[1:-1].replace('""', '"')
    return text


def table_name(db_table: str) -> Name:
    """The name a model's ``db_table`` gives: Django quotes it whole unless it is quoted
    already (``'"schema"."t"'`` names a table in a schema, ``'a.b'`` one table)."""
    if db_table.startswith('"') and db_table.endswith('"'):
        tokens = _tokens(db_table)
        if tokens and all(t.kind == "ident" or t.text == "." for t in tokens):
            return tuple(t.text for t in tokens if t.kind == "ident")
    return (db_table,)


@dataclass(frozen=True)
class Table:
    """What the classifier needs to know of a table whose writes matter."""

    db_table: str
    pk: str | None  # the pk column; None for a composite pk (rows cannot be named)
    lookups: tuple[str, ...] = ()  # columns of this table that cached lookups read
    cached: bool = True  # False: its rows are not cached, only what its writes cascade to


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
    values: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # lookup -> new values
    lookup_changed: bool = False  # a lookup column is set to a value not known here
    upsert: bool = False
    flushed: frozenset[str] = frozenset()  # other tables whose rows may have changed
    cascade: bool = False  # TRUNCATE ... CASCADE


UNTOUCHED = Outcome("untouched")


def classify(
    sql: str,
    params: Any,
    tables: Mapping[str, Table],
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
    tokens = _tokens(sql)
    if tokens is None:
        return _mentioned(_rough_names(sql), tables)
    statements = _split(tokens)
    if len(statements) != 1:
        return _mentioned(tokens, tables)
    body = statements[0]
    head = body[0]
    if head.is_word("update", "delete", "insert", "merge"):
        return _write(sql, params, body, tables, many, returning, qualify)
    if head.is_word("truncate"):
        return _truncate(body, tables)
    if any(_is_write_word(body, i) for i in range(len(body))):  # WITH ... UPDATE and the like
        return _mentioned(body, tables)
    return UNTOUCHED


def _split(tokens: list[Token]) -> list[list[Token]]:
    statements: list[list[Token]] = [[]]
    for token in tokens:
        if token.text == ";" and token.kind == "punct":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _is_write_word(body: list[Token], i: int) -> bool:
    token = body[i]
    if not token.is_word("update", "delete", "insert", "merge", "truncate"):
        return False
    before = body[i - 1] if i else None
    # FOR UPDATE, FOR NO KEY UPDATE: a row lock, not a write
    return not (before is not None and before.is_word("for", "key"))


def _names(tokens: list[Token]) -> list[tuple[Name, int, int]]:
    """Every dotted name in the tokens: (parts, start index, end index)."""
    found, i = [], 0
    while i < len(tokens):
        if tokens[i].kind in ("word", "ident"):
            j = i + 1
            while (
                j + 1 < len(tokens)
                and tokens[j].text == "."
                and tokens[j + 1].kind in ("word", "ident")
            ):
                j += 2
            found.append((tuple(t.text for t in tokens[i:j:2]), i, j))
            i = j
        else:
            i += 1
    return found


def _rough_names(sql: str) -> list[Token]:
    """Name-like words of a text that does not lex, for a conservative flush."""
    return [
        Token("word", _fold("word", w), 0, 0, 0) for w in re.findall(r"[A-Za-z_][\w$]*", sql)
    ] + [Token("ident", w, 0, 0, 0) for w in re.findall(r'"([^"]+)"', sql)]


def _resolve(name: Name, tables: Mapping[str, Table]) -> list[str]:
    """The tables ``name`` may be: the last parts must match; a schema only where both
    sides give one (an unqualified name may be any schema on the search path)."""
    found = []
    for db_table in tables:
        own = table_name(db_table)
        if name[-1] != own[-1]:
            continue
        if len(name) > 1 and len(own) > 1 and name[-2] != own[-2]:
            continue
        found.append(db_table)
    return found


def _mentioned(tokens: list[Token], tables: Mapping[str, Table]) -> Outcome:
    names = {t for name, _, _ in _names(tokens) for t in _resolve(name, tables)}
    if not names:
        return UNTOUCHED
    return Outcome("flush", kind="write", flushed=frozenset(names))


def _truncate(body: list[Token], tables: Mapping[str, Table]) -> Outcome:
    names = {t for name, _, _ in _names(body[1:]) for t in _resolve(name, tables)}
    cascade = any(t.is_word("cascade") for t in body)
    if not names:
        return UNTOUCHED
    return Outcome("flush", kind="truncate", flushed=frozenset(names), cascade=cascade)


def _target(body: list[Token]) -> tuple[int, int] | None:
    """The token span of the written table's name."""
    i = 1
    if body[0].is_word("delete", "insert", "merge"):
        if len(body) < 2 or not body[1].is_word("from", "into"):
            return None
        i = 2
    if i < len(body) and body[i].is_word("only"):
        i += 1
    for _name, start, end in _names(body):
        if start == i:
            return start, end
        if start > i:
            break
    return None


def _alias(body: list[Token], end: int, kind: str) -> Token | None:
    i = end + (1 if end < len(body) and body[end].text == "*" else 0)
    if i < len(body) and body[i].is_word("as"):
        return body[i + 1] if i + 1 < len(body) else None
    stop = {"update": "set", "delete": "using where returning", "merge": "using"}.get(kind, "")
    if i < len(body) and body[i].kind in ("word", "ident") and body[i].text not in stop.split():
        return body[i] if kind != "insert" else None
    return None


def _write(
    sql: str,
    params: Any,
    body: list[Token],
    tables: Mapping[str, Table],
    many: bool,
    returning: bool,
    qualify: bool,
) -> Outcome:
    kind = body[0].text
    span = _target(body)
    if span is None:
        return _mentioned(body, tables)
    name = tuple(t.text for t in body[span[0] : span[1] : 2])
    found = _resolve(name, tables)
    if len(found) != 1:  # unknown, or one name for tables of several schemas
        return _mentioned(body, tables) if found else UNTOUCHED
    table = tables[found[0]]
    alias = _alias(body, span[1], kind)
    written = sql[body[span[0]].start : body[span[1] - 1].end]
    qualifier = _quote(alias) if alias is not None else written
    own = _own_returning(body, {name[-1], *((alias.text,) if alias else ())})
    pk_index = own.index(table.pk) if own and table.pk in own else None
    base = Outcome("untouched", kind=kind, target=table.db_table, pk_index=pk_index)
    if not table.cached:
        return base
    if kind in ("insert", "merge"):
        upsert = kind == "merge" or _is_upsert(body)
        action: Action = "flush" if upsert else "inserted"
        return _replace(base, action=action, upsert=upsert, pk_index=None if many else pk_index)
    if table.pk is None:
        return _replace(base, action="flush")
    lookups = table.lookups if kind == "update" else ()
    if returning and not many and own is None:
        rewritten = _with_returning(sql, body, qualifier if qualify else None, table, lookups)
        if rewritten is not None:
            return _replace(base, action="returning", sql=rewritten, lookups=lookups)
    shaped = _by_shape(body, params, many, table.pk, {name[-1], *((alias.text,) if alias else ())})
    if shaped is not None:
        values, changed = _set_values(body, params, many, lookups)
        return _replace(base, action="shape", pks=shaped, values=values, lookup_changed=changed)
    if pk_index is not None and not many:
        changed = any(t.kind in ("word", "ident") and t.text in lookups for t in body)
        return _replace(base, action="returned", lookup_changed=changed)
    return _replace(base, action="flush")


def _replace(outcome: Outcome, **changes: Any) -> Outcome:
    from dataclasses import replace

    return replace(outcome, **changes)


def _quote(token: Token) -> str:
    return '"' + token.text.replace('"', '""') + '"'


def _top(body: list[Token], *words: str) -> int | None:
    """Index of the first of ``words`` outside parentheses."""
    for i, token in enumerate(body):
        if token.depth == 0 and token.is_word(*words):
            return i
    return None


def _is_upsert(body: list[Token]) -> bool:
    conflict = _top(body, "conflict")
    if conflict is None:
        return False
    rest = body[conflict:]
    return any(t.is_word("do") and rest[i + 1].is_word("update") for i, t in enumerate(rest[:-1]))


def _own_returning(body: list[Token], qualifiers: set[str]) -> list[str | None] | None:
    """The columns of the statement's own ``RETURNING`` (None where not a plain column)."""
    start = _top(body, "returning")
    if start is None:
        return None
    columns: list[str | None] = []
    for item in _items(body[start + 1 :]):
        names = _names(item)
        column = None
        if names and names[0][1] == 0 and _qualified_by(names[0][0], qualifiers):
            tail = item[names[0][2] :]
            aliased = len(tail) == 1 or (len(tail) == 2 and tail[0].is_word("as"))
            if not tail or aliased:
                column = names[0][0][-1]
        columns.append(column)
    return columns


def _qualified_by(name: Name, qualifiers: set[str]) -> bool:
    """A column name that is bare or qualified by the written table (or its alias)."""
    return len(name) == 1 or name[-2] in qualifiers


def _items(tokens: list[Token]) -> list[list[Token]]:
    """Tokens split at the commas outside parentheses."""
    items: list[list[Token]] = [[]]
    base = tokens[0].depth if tokens else 0
    for token in tokens:
        if token.text == "," and token.depth == base:
            items.append([])
        else:
            items[-1].append(token)
    return items


def _with_returning(
    sql: str, body: list[Token], qualifier: str | None, table: Table, lookups: Sequence[str]
) -> str | None:
    """``sql`` returning the pk then the lookup columns, or None where that is unsafe."""
    end = body[-1].end
    if "%" in sql[end:]:  # a placeholder-like text in a trailing comment would shift params
        return None
    joined = "using" if body[0].text == "delete" else "from"
    if qualifier is None and _top(body, joined) is not None:  # a bare column is ambiguous
        return None
    prefix = f"{qualifier}." if qualifier else ""
    columns = ", ".join(f'{prefix}"{c}"' for c in (str(table.pk), *lookups))
    return f"{sql[:end]} RETURNING {columns}"


def _by_shape(
    body: list[Token], params: Any, many: bool, pk: str, qualifiers: set[str]
) -> tuple[Any, ...] | None:
    """The pks of ``... WHERE [t.]pk = %s`` or ``IN (%s, ...)``, read from the parameters."""
    where = _top(body, "where")
    rows = _param_rows(params, many)
    if where is None or rows is None:
        return None
    stop = _top(body, "returning")
    clause = body[where + 1 : stop]
    names = _names(clause)
    if not names or names[0][1] != 0:
        return None
    column, _, after = names[0]
    if column[-1] != pk or not _qualified_by(column, qualifiers):
        return None
    rest = [t.kind if t.kind == "param" else t.text for t in clause[after:]]
    listed = rest[2:-1]
    if rest == ["=", "param"]:
        count = 1
    elif (
        rest[:2] == ["in", "("]
        and rest[-1:] == [")"]
        and listed[::2] == ["param"] * (len(listed) // 2 + 1)
        and set(listed[1::2]) <= {","}
    ):
        count = len(listed) // 2 + 1
    else:
        return None
    total = sum(1 for t in body if t.kind == "param")
    first = sum(1 for t in body[: where + 1] if t.kind == "param")
    if any(len(row) != total for row in rows):
        return None
    return tuple(v for row in rows for v in row[first : first + count])


def _param_rows(params: Any, many: bool) -> list[Sequence[Any]] | None:
    def is_row(value: Any) -> bool:
        return isinstance(value, Sequence) and not isinstance(value, (str, bytes))

    if not many:
        return [params] if is_row(params) else None
    rows = list(params) if is_row(params) else []
    return rows if rows and all(is_row(r) for r in rows) else None


def _set_values(
    body: list[Token], params: Any, many: bool, lookups: Sequence[str]
) -> tuple[dict[str, tuple[Any, ...]], bool]:
    """New values of lookup columns set to a parameter; whether one is set otherwise."""
    start = _top(body, "set")
    if start is None or not lookups:
        return {}, False
    stop = _top(body, "from", "where", "returning") or len(body)
    rows = _param_rows(params, many) or []
    values: dict[str, tuple[Any, ...]] = {}
    changed = False
    for item in _items(body[start + 1 : stop]):
        names = _names(item)
        if not names or names[0][1] != 0:  # (a, b) = (...): a row of columns
            changed |= any(t.text in lookups for t in item if t.kind in ("word", "ident"))
            continue
        column = names[0][0][-1]
        if column not in lookups:
            continue
        shape = [t.kind if t.kind == "param" else t.text for t in item[names[0][2] :]]
        if shape != ["=", "param"] or not rows:
            changed = True
            continue
        index = sum(1 for t in body if t.kind == "param" and t.start < item[-1].start)
        values[column] = tuple(row[index] for row in rows)
    return values, changed
