"""Display text → match-ready text.

Matching works on a canonical form: the text split into words, each word case-folded and stripped
of accents, joined by single spaces. In that form a whole-word search is a substring search for
" word " (the text is padded with a space each side), so hyphens, dashes, apostrophes, line breaks
and non-breaking spaces inside a phrase all stop mattering: "Russia–Ukraine", "Russia-Ukraine" and
"Russia\u00a0Ukraine" all read "russia ukraine". Every word keeps the span it came from, so a hit
found in the canonical form can be shown in the original text.
"""

from __future__ import annotations

import unicodedata
from bisect import bisect_right
from dataclasses import dataclass

import regex

# A word starts with a letter or digit and goes on through letters, digits and combining marks, so
# scripts whose vowel signs are marks (Devanagari, Thai...) keep their words whole.
_WORD = regex.compile(r"[\p{L}\p{N}][\p{L}\p{M}\p{N}]*")


def fold_word(word: str) -> str:
    """Case- and accent-fold one word: "Orbán" → "orban", "STRASSE"/"Straße" → "strasse"."""
    decomposed = unicodedata.normalize("NFKD", word)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped.casefold())


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """The canonical form of a text, and where each of its words came from."""

    original: str
    canonical: str
    """Folded words joined by single spaces, with one leading and one trailing space."""
    word_starts: tuple[int, ...]
    """Offset in `canonical` where each word starts."""
    spans: tuple[tuple[int, int], ...]
    """(start, end) of each word in `original`."""

    def original_span(self, canonical_start: int, canonical_end: int) -> tuple[int, int]:
        """The stretch of the original text that a canonical [start, end) range came from."""
        first = max(0, bisect_right(self.word_starts, canonical_start) - 1)
        last = max(first, bisect_right(self.word_starts, canonical_end - 1) - 1)
        return self.spans[first][0], self.spans[last][1]


def normalize(text: str) -> NormalizedText:
    """Split `text` into folded words; see the module docstring for why."""
    source = unicodedata.normalize("NFC", text)
    # NFC can change lengths only for text that was not NFC already; keep spans in that text.
    words: list[str] = []
    starts: list[int] = []
    spans: list[tuple[int, int]] = []
    position = 1
    for found in _WORD.finditer(source):
        folded = fold_word(found.group())
        if not folded:
            continue
        for part in folded.split():
            words.append(part)
            starts.append(position)
            spans.append(found.span())
            position += len(part) + 1
    canonical = " " + " ".join(words) + " " if words else " "
    return NormalizedText(source, canonical, tuple(starts), tuple(spans))


def normalize_term(term: str) -> str:
    """A watchlist term in canonical form without padding: "Jake  Sullivan" → "jake sullivan"."""
    return normalize(term).canonical.strip()
