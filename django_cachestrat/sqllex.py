"""A small SQL lexer: the tokens PostgreSQL sees, with names folded as it folds them."""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = ["Name", "Token", "head", "names", "rough_names", "split", "table_name", "tokens"]

Name = tuple[str, ...]  # identifier parts, folded the way PostgreSQL folds them

_TOKEN = re.compile(
    r"""\s*(?:
    (--[^\n]*)
    |(/\*)
    |("(?:[^"]|"")*")
    |((?:[Ee]'(?:[^'\\]|''|\\.)*')|'(?:[^']|'')*')
    |(\$(?:[A-Za-z_]\w*)?\$)
    |(%%)
    |(%(?:\([^)]*\))?[sbt])
    |([A-Za-z_\x80-\uffff][\w$\x80-\uffff]*)
    |(\d[\w.]*)
    |([(),;.*=])
    |([^\s"']))""",
    re.VERBOSE | re.DOTALL,
)
# The kind of each group of _TOKEN (comments and dollar quotes are handled apart).
_KINDS: tuple[str, ...] = (
    "",
    "",
    "",
    "ident",
    "str",
    "str",
    "op",
    "param",
    "word",
    "num",
    "punct",
    "op",
)
_COMMENT_MARK = re.compile(r"/\*|\*/")


class Token(NamedTuple):
    kind: str  # word (folded), ident (quoted, exact), str, param, num, punct, op
    text: str
    start: int
    end: int
    depth: int  # parenthesis depth

    def is_word(self, *words: str) -> bool:
        return self.kind == "word" and self.text in words


def tokens(sql: str) -> list[Token] | None:
    """The significant tokens of ``sql``, or None when it does not lex (an open quote)."""
    found: list[Token] = []
    append, new = found.append, tuple.__new__  # built by the thousand for a bulk statement
    depth = pos = 0
    while True:
        for match in _TOKEN.finditer(sql, pos):
            if match.start() != pos:  # text no token matches: an open quote
                return None
            group = match.lastindex or 0
            pos = match.end()
            if group == 8:
                append(new(Token, ("word", match.group(8).lower(), match.start(8), pos, depth)))
            elif group == 10:
                text = match.group(10)
                if text == ")":
                    depth -= 1
                append(new(Token, ("punct", text, pos - 1, pos, depth)))
                if text == "(":
                    depth += 1
            elif group == 3:
                text = match.group(3)[1:-1].replace('""', '"')
                append(new(Token, ("ident", text, match.start(3), pos, depth)))
            elif group in (2, 5):  # a block comment or a dollar-quoted string: find its end
                break
            elif group != 1:
                kind = _KINDS[group]
                append(new(Token, (kind, match.group(group), match.start(group), pos, depth)))
        else:
            return found if not sql[pos:].strip() else None
        start = match.start(group)
        if group == 2:
            pos = _block_end(sql, pos)
        else:
            close = sql.find(match.group(5), pos)
            pos = len(sql) + 1 if close < 0 else close + len(match.group(5))
            append(Token("str", sql[start:pos], start, pos, depth))
        if pos > len(sql):
            return None


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


def head(sql: str) -> str:
    """The first characters of ``sql`` after its leading comments, upper-cased."""
    pos = len(sql) - len(sql.lstrip())
    while sql.startswith(("--", "/*"), pos):
        if sql.startswith("--", pos):
            end = sql.find("\n", pos)
            pos = len(sql) if end < 0 else end
        else:
            pos = min(_block_end(sql, pos + 2), len(sql))
        pos += len(sql[pos:]) - len(sql[pos:].lstrip())
    return sql[pos : pos + 8].upper()


def table_name(db_table: str) -> Name:
    """The name a model's ``db_table`` gives: Django quotes it whole unless it is quoted
    already (``'"schema"."t"'`` names a table in a schema, ``'a.b'`` one table)."""
    if db_table.startswith('"') and db_table.endswith('"'):
        found = tokens(db_table)
        if found and all(t.kind == "ident" or t.text == "." for t in found):
            return tuple(t.text for t in found if t.kind == "ident")
    return (db_table,)


def split(found: list[Token]) -> list[list[Token]]:
    """The statements, split at semicolons; empty ones dropped."""
    statements: list[list[Token]] = [[]]
    for token in found:
        if token.text == ";" and token.kind == "punct":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def names(found: list[Token]) -> list[tuple[Name, int, int]]:
    """Every dotted name in the tokens: (parts, start index, end index)."""
    result, i = [], 0
    while i < len(found):
        if found[i].kind in ("word", "ident"):
            j = i + 1
            while (
                j + 1 < len(found)
                and found[j].text == "."
                and found[j + 1].kind in ("word", "ident")
            ):
                j += 2
            result.append((tuple(t.text for t in found[i:j:2]), i, j))
            i = j
        else:
            i += 1
    return result


def rough_names(sql: str) -> list[Token]:
    """Name-like words of a text that does not lex, for a conservative flush."""
    return [Token("word", w.lower(), 0, 0, 0) for w in re.findall(r"[A-Za-z_][\w$]*", sql)] + [
        Token("ident", w, 0, 0, 0) for w in re.findall(r'"([^"]+)"', sql)
    ]
