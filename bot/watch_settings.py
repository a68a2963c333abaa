"""The watch-language parts of the settings: checking terms and queries, and placing a query's
mistakes at their line and column in the YAML file.

bot.settings validates the YAML; this module holds the few rules that come from feeds.query, so
that a query error reads like every other config problem (FILE:LINE:COL: watchlists[0].query: ...)
and points at the very character where the query goes wrong, not just at the start of the value.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_core import PydanticCustomError
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from feeds.query import QueryError, parse_query, parse_term

_LANGUAGE = re.compile(r"[a-z]{2,3}")


def check_term(term: str) -> str:
    """A term of keywords/all/exclude in term syntax (alias groups, prefixes, =CASE)."""
    try:
        parse_term(term)
    except QueryError as error:
        raise ValueError(error.message) from None
    return term


def check_query(query: str, *, allow_regex: bool, watchlist: object) -> str:
    """A query in the watch language; the error keeps its offset for :func:`query_position`."""
    if not query.strip():
        return query
    try:
        parse_query(query, allow_regex=allow_regex)
    except QueryError as error:
        named = f' (watchlist "{watchlist}")' if isinstance(watchlist, str) else ""
        raise PydanticCustomError(
            "query", "{message}" + named, {"message": error.message, "offset": error.offset}
        ) from None
    return query


def check_language(code: str) -> str:
    lowered = code.strip().lower()
    if not _LANGUAGE.fullmatch(lowered):
        raise PydanticCustomError(
            "language",
            'bad language "{code}" (use a two- or three-letter code such as en, uk, fra)',
            {"code": code},
        )
    return lowered


def query_position(
    root: CommentedMap, loc: tuple[str | int, ...], offset: int, file: str, line: int, column: int
) -> tuple[int, int, str]:
    """0-based line and column of character `offset` of the query at `loc` in the file.

    (line, column) is where the value starts. A one-line plain or quoted value maps exactly; a
    literal block (|) maps line by line; anything else (folded or wrapped values) stays at the
    value's start and the returned note gives the position inside the query instead.
    """
    value = _value_at(root, loc)
    if not isinstance(value, str):
        return line, column, ""
    text = str(value)
    before = text[:offset]
    query_line = before.count("\n")
    query_column = offset - (before.rfind("\n") + 1)
    note = f" (query line {query_line + 1}, column {query_column + 1})"
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return line, column, note
    if isinstance(value, LiteralScalarString):
        target = line + 1 + query_line
        if target < len(lines):
            indent = len(lines[target]) - len(lines[target].lstrip(" "))
            return target, indent + query_column, ""
        return line, column, note
    if isinstance(value, FoldedScalarString) or "\n" in text or line >= len(lines):
        return line, column, note
    source = lines[line]
    quoted = column < len(source) and source[column] in "\"'"
    start = column + (1 if quoted else 0)
    if source[start : start + len(text)] != text:
        return line, column, note  # escapes or interpolation changed the text: do not guess
    return line, start + offset, ""


def _value_at(root: CommentedMap, loc: tuple[str | int, ...]) -> object:
    node: object = root
    for step in loc:
        in_map = isinstance(node, CommentedMap) and step in node
        in_seq = isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node)
        if in_map or in_seq:
            node = node[step]  # type: ignore[index]
        else:
            return None
    return node
