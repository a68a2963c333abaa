"""Regular-expression terms, bounded in cost: RE2 (google-re2) instead of a backtracking engine.

A watchlist's regex is user input. Python's `re` and `regex` backtrack, so a pattern such as
``(a+)+b`` can take exponential time on a hostile or merely unlucky article; RE2 guarantees time
linear in the text and caps its memory, and simply refuses what it cannot do in that bound
(backreferences, lookaround). Regexes are off unless a watchlist turns them on.

Matching is case-insensitive, like every other term, over the display text of a field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import re2  # type: ignore[import-untyped]

MAX_PROGRAM_BYTES = 8 << 20
"""RE2's memory budget for one compiled pattern; a pattern that needs more is refused."""


class RegexTermError(ValueError):
    """A pattern RE2 cannot compile within its bounds (syntax, backreferences, too large)."""


@cache
def compile_regex(pattern: str) -> Callable[[str], Iterator[tuple[int, int]]]:
    """A function giving the (start, end) of every match of `pattern` in a text."""
    options = re2.Options()
    options.log_errors = False
    options.case_sensitive = False
    options.max_mem = MAX_PROGRAM_BYTES
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as error:
        reason = error.args[0] if error.args else error
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        raise RegexTermError(str(reason)) from None
    if compiled.search("") is not None:
        raise RegexTermError("it matches empty text, so it would match every article")

    def spans(text: str) -> Iterator[tuple[int, int]]:
        for found in compiled.finditer(text):
            start, end = found.span()
            yield start, end

    return spans
