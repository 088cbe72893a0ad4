"""The clauses of one write statement: its target, alias, RETURNING, WHERE pk and SET."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .sqllex import Name, Token, names

__all__ = [
    "Table",
    "alias",
    "is_upsert",
    "items",
    "lookup_params",
    "own_returning",
    "pk_params",
    "qualified_by",
    "quote",
    "target",
    "top",
    "with_returning",
]


@dataclass(frozen=True)
class Table:
    """What the classifier needs to know of a table whose writes matter."""

    db_table: str
    pk: str | None  # the pk column; None for a composite pk (rows cannot be named)
    lookups: tuple[str, ...] = ()  # columns of this table that cached lookups read
    cached: bool = True  # False: its rows are not cached, only what its writes cascade to


def target(body: list[Token]) -> tuple[int, int] | None:
    """The token span of the written table's name."""
    i = 1
    if body[0].is_word("delete", "insert", "merge"):
        if len(body) < 2 or not body[1].is_word("from", "into"):
            return None
        i = 2
    if i < len(body) and body[i].is_word("only"):
        i += 1
    if i >= len(body) or body[i].kind not in ("word", "ident"):
        return None
    end = i + 1
    while end + 1 < len(body) and body[end].text == "." and body[end + 1].kind in ("word", "ident"):
        end += 2
    return i, end


def alias(body: list[Token], end: int, kind: str) -> Token | None:
    i = end + (1 if end < len(body) and body[end].text == "*" else 0)
    if i < len(body) and body[i].is_word("as"):
        return body[i + 1] if i + 1 < len(body) else None
    stop = {"update": "set", "delete": "using where returning", "merge": "using"}.get(kind, "")
    if i < len(body) and body[i].kind in ("word", "ident") and body[i].text not in stop.split():
        return body[i] if kind != "insert" else None
    return None


def quote(token: Token) -> str:
    return '"' + token.text.replace('"', '""') + '"'


def top(body: list[Token], *words: str) -> int | None:
    """Index of the first of ``words`` outside parentheses."""
    for i, token in enumerate(body):
        if token.depth == 0 and token.is_word(*words):
            return i
    return None


def is_upsert(body: list[Token]) -> bool:
    conflict = top(body, "conflict")
    if conflict is None:
        return False
    rest = body[conflict:]
    return any(t.is_word("do") and rest[i + 1].is_word("update") for i, t in enumerate(rest[:-1]))


def own_returning(body: list[Token], qualifiers: set[str]) -> list[str | None] | None:
    """The columns of the statement's own ``RETURNING`` (None where not a plain column)."""
    start = top(body, "returning")
    if start is None:
        return None
    columns: list[str | None] = []
    for item in items(body[start + 1 :]):
        named = names(item)
        column = None
        if named and named[0][1] == 0 and qualified_by(named[0][0], qualifiers):
            tail = item[named[0][2] :]
            aliased = len(tail) == 1 or (len(tail) == 2 and tail[0].is_word("as"))
            if not tail or aliased:
                column = named[0][0][-1]
        columns.append(column)
    return columns


def qualified_by(name: Name, qualifiers: set[str]) -> bool:
    """A column name that is bare or qualified by the written table (or its alias)."""
    return len(name) == 1 or name[-2] in qualifiers


def items(found: list[Token]) -> list[list[Token]]:
    """Tokens split at the commas outside parentheses."""
    items: list[list[Token]] = [[]]
    base = found[0].depth if found else 0
    for token in found:
        if token.text == "," and token.depth == base:
            items.append([])
        else:
            items[-1].append(token)
    return items


def with_returning(
    sql: str, body: list[Token], qualifier: str | None, table: Table, lookups: Sequence[str]
) -> str | None:
    """``sql`` returning the pk then the lookup columns, or None where that is unsafe."""
    end = body[-1].end
    if "%" in sql[end:]:  # a placeholder-like text in a trailing comment would shift params
        return None
    joined = "using" if body[0].text == "delete" else "from"
    if qualifier is None and top(body, joined) is not None:  # a bare column is ambiguous
        return None
    prefix = f"{qualifier}." if qualifier else ""
    columns = ", ".join(f'{prefix}"{c}"' for c in (str(table.pk), *lookups))
    return f"{sql[:end]} RETURNING {columns}"


def pk_params(body: list[Token], pk: str, qualifiers: set[str]) -> tuple[int, int] | None:
    """Where the pks of ``... WHERE [t.]pk = %s`` or ``IN (%s, ...)`` are in the parameters."""
    where = top(body, "where")
    if where is None:
        return None
    clause = body[where + 1 : top(body, "returning")]
    found = names(clause)
    if not found or found[0][1] != 0:
        return None
    column, _, after = found[0]
    if column[-1] != pk or not qualified_by(column, qualifiers):
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
    return sum(1 for t in body[: where + 1] if t.kind == "param"), count


def lookup_params(
    body: list[Token], lookups: Sequence[str]
) -> tuple[tuple[tuple[str, int], ...], bool]:
    """Where the new values of lookup columns set to a parameter are; whether a lookup
    column is set to anything else."""
    start = top(body, "set")
    if start is None or not lookups:
        return (), False
    stop = top(body, "from", "where", "returning") or len(body)
    found: list[tuple[str, int]] = []
    changed = False
    index = sum(1 for t in body[:start] if t.kind == "param")
    for item in items(body[start + 1 : stop]):
        named = names(item)
        params = [t for t in item if t.kind == "param"]
        if not named or named[0][1] != 0:  # (a, b) = (...): a row of columns
            changed |= any(t.text in lookups for t in item if t.kind in ("word", "ident"))
        elif named[0][0][-1] in lookups:
            shape = [t.kind if t.kind == "param" else t.text for t in item[named[0][2] :]]
            if shape == ["=", "param"]:
                found.append((named[0][0][-1], index))
            else:
                changed = True
        index += len(params)
    return tuple(found), changed
