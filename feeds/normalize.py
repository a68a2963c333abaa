"""Display text → match-ready text.

Matching works on a canonical form: the text split into words, each word case-folded and stripped
of accents, joined by single spaces. In that form a whole-word search is a substring search for
" word " (the text is padded with a space each side), so hyphens, dashes, apostrophes, line breaks
and non-breaking spaces inside a phrase all stop mattering: "Russia–Ukraine", "Russia-Ukraine" and
"Russia\u00a0Ukraine" all read "russia ukraine". Every word keeps the span it came from, so a hit
found in the canonical form can be shown in the original text.

Speed matters here more than anywhere else in matching: normalising an article costs more than the
automaton pass over it. So the canonical string is built in bulk by C-level string operations when
the text allows it (text whose only non-ASCII characters are typographic punctuation and spaces,
or Latin letters whose accents strip off to ASCII, as in most European news), and word by word,
with a cache of folded words, otherwise. Both paths give the same
result (a property test checks it), and the spans, needed only to show a snippet, are computed on
first use.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import islice
from typing import Any

import regex

# A word starts with a letter or digit and goes on through letters, digits and combining marks, so
# scripts whose vowel signs are marks (Devanagari, Thai...) keep their words whole.
_WORD = regex.compile(r"[\p{L}\p{N}][\p{L}\p{M}\p{N}]*")

# Punctuation and spaces common in edited English text that are not ASCII. None of them is part of a
# word, so replacing each by an ASCII space (one character for one) changes neither the words nor
# their offsets, and lets far more real text take the bulk path.
_TYPOGRAPHIC = (
    "\u00a0\u2009\u200a\u202f\u2002\u2003"  # no-break, thin and other spaces
    "\u2018\u2019\u201c\u201d\u00ab\u00bb"  # quotes and apostrophes
    "\u2013\u2014\u2026\u2022\u00b7"  # dashes, ellipsis, bullets
)

# bytes.translate table for the bulk path: ASCII letters and digits are kept (upper case lowered),
# everything else becomes a space, so splitting on spaces gives exactly the words _WORD finds.
_ASCII_FOLD = bytes(
    byte if chr(byte).isascii() and chr(byte).isalnum() else 0x20 for byte in range(256)
).lower()

_ASCII_BYTES = bytes(range(128))

_FOLD_CACHE_LIMIT = 200_000
_fold_cache: dict[str, str] = {}


def fold_word(word: str) -> str:
    """Case- and accent-fold one word: "Orbán" → "orban", "STRASSE"/"Straße" → "strasse"."""
    return unicodedata.normalize("NFC", strip_accents(word).casefold())


def strip_accents(text: str) -> str:
    """Remove combining accents but keep case: "ORBÁN" → "ORBAN" (for case-sensitive terms)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return unicodedata.normalize(
        "NFC", "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    )


def _folded(word: str) -> str:
    """fold_word through a bounded cache: news repeats its words, folding them is the slow part."""
    folded = _fold_cache.get(word)
    if folded is None:
        # A fold may yield spaces (compatibility ligatures of several words); keep single spaces.
        folded = " ".join(fold_word(word).split())
        if len(_fold_cache) >= _FOLD_CACHE_LIMIT:
            _fold_cache.clear()
        _fold_cache[word] = folded
    return folded


class NormalizedText:
    """The canonical form of a text, and (computed on first use) where each word came from."""

    __slots__ = ("_spans", "_word_finder", "_word_starts", "canonical", "original")

    def __init__(self, original: str, canonical: str, word_finder: Any = None) -> None:
        self.original = original
        self.canonical = canonical
        """Folded words joined by single spaces, with one leading and one trailing space."""
        self._word_finder = word_finder
        """A pattern whose matches in `original` are the canonical words one for one, so that a
        word's span can be found by C-level matching alone; None: use the full `spans`."""
        self._word_starts: tuple[int, ...] | None = None
        self._spans: tuple[tuple[int, int], ...] | None = None

    @property
    def word_starts(self) -> tuple[int, ...]:
        """Offset in `canonical` where each word starts."""
        if self._word_starts is None:
            starts, position = [], 1
            for word in self.canonical[1:-1].split(" ") if self.canonical.strip() else ():
                starts.append(position)
                position += len(word) + 1
            self._word_starts = tuple(starts)
        return self._word_starts

    @property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """(start, end) in `original` of each canonical word (a word folding to two gets two)."""
        if self._spans is None:
            spans: list[tuple[int, int]] = []
            for found in _WORD.finditer(self.original):
                spans.extend([found.span()] * len(_folded(found.group()).split()))
            self._spans = tuple(spans)
        return self._spans

    def word_index(self, canonical_offset: int) -> int:
        """The index of the word at a canonical offset (an offset inside a word, not a space)."""
        return max(0, self.canonical.count(" ", 0, canonical_offset + 1) - 1)

    def original_span(self, canonical_start: int, canonical_end: int) -> tuple[int, int]:
        """The stretch of the original text that a canonical [start, end) range came from."""
        first = self.word_index(canonical_start)
        last = max(first, self.word_index(canonical_end - 1))
        spans = self._spans_of(first, last)
        return spans[0][0], spans[-1][1]

    def original_words(self, first: int, last: int) -> list[str]:
        """The original words with canonical indexes first..last inclusive."""
        return [self.original[start:end] for start, end in self._spans_of(first, last)]

    def _spans_of(self, first: int, last: int) -> list[tuple[int, int]]:
        if self._word_finder is not None and self._spans is None:
            found = islice(self._word_finder.finditer(self.original), first, last + 1)
            return [word.span() for word in found]
        return list(self.spans[first : last + 1])


def normalize(text: str) -> NormalizedText:
    """Split `text` into folded words; see the module docstring for why."""
    if not text.isascii():
        bulk = _bulk_if_simple(text)
        if bulk is not None:  # ASCII, typographic punctuation, precomposed letters: NFC already
            return NormalizedText(text, _padded(bulk[0]), bulk[1])
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    return NormalizedText(text, *_canonical(text))


def _bulk_if_simple(text: str) -> tuple[str, Any] | None:
    """The folded words of a text, and the pattern that finds its words one for one, if its only
    non-ASCII characters are typographic punctuation or letters that fold to ASCII
    (_ASCII_LETTERS); else None.

    Typographic marks are few and common, so each is looked for and blanked by C-level str
    operations. Accented letters are many and rarer: those present are found only when the text
    is not ASCII by then, by bytes operations (delete every ASCII byte, decode the rest), and
    each costs one str.replace. Either way the text then takes the ASCII bulk path.
    """
    plain = text
    for mark in _TYPOGRAPHIC:
        if mark in plain:
            plain = plain.replace(mark, " ")
    try:
        # isascii() is no help here: replace() keeps the wider storage of the original string.
        return _bulk_bytes(plain.encode("ascii")), _ASCII_WORD
    except UnicodeEncodeError:
        pass
    others = plain.encode("utf-8").translate(None, _ASCII_BYTES).decode("utf-8")
    for char in set(others):
        replacement = _ASCII_LETTERS.get(char)
        if replacement is None:
            return None
        plain = plain.replace(char, replacement)
    # An accented letter is part of a word that [A-Za-z0-9]+ would cut in two: find words by _WORD.
    return _bulk_bytes(plain.encode("ascii")), _WORD


def canonical_form(text: str) -> str:
    """The canonical string alone (no spans); see _canonical."""
    return _canonical(text)[0]


def _canonical(text: str) -> tuple[str, Any]:
    """The canonical string alone (no spans), by the fastest path the text allows.

    `text` must be NFC (normalize and normalize_term see to it). Three paths, one result:
    ASCII text (once typographic punctuation is blanked) in bulk; mostly-ASCII text in bulk
    with only its words that hold other characters folded one by one; anything else word by word.
    Also returns a compiled pattern whose matches in `text` are the canonical words one for one
    (so a word's span can be found by C-level matching alone), or None when some word folds to
    no word or to several.
    """
    if text.isascii():
        return _padded(_bulk_words(text)), _ASCII_WORD
    bulk = _bulk_if_simple(text)
    if bulk is not None:
        return _padded(bulk[0]), bulk[1]
    plain = text
    for mark in _TYPOGRAPHIC:
        if mark in plain:
            plain = plain.replace(mark, " ")
    if len(plain.encode("utf-8")) - len(plain) > len(plain) // 16:
        words, one_to_one = _by_word(plain)
        return _padded(words), _WORD if one_to_one else None
    pieces: list[str] = []
    done = 0
    one_to_one = True
    for run in _NON_ASCII.finditer(plain):
        if run.start() < done:
            continue  # inside the chunk already folded
        start = max(plain.rfind(space, done, run.start()) for space in _ASCII_SPACES) + 1
        start = max(start, done)
        ends = [plain.find(space, run.end()) for space in _ASCII_SPACES]
        end = min((found for found in ends if found != -1), default=len(plain))
        pieces.append(_bulk_words(plain[done:start]))
        words, same = _by_word(plain[start:end])
        pieces.append(words)
        one_to_one = one_to_one and same
        done = end
    pieces.append(_bulk_words(plain[done:]))
    return _padded(" ".join(piece for piece in pieces if piece)), _WORD if one_to_one else None


_ASCII_WORD = re.compile(r"[A-Za-z0-9]+")
_SPACE_RUNS = re.compile(rb"  +")
_NON_ASCII = regex.compile(r"[^\x00-\x7f]+")
_ASCII_SPACES = " \t\n\r\f\v"


def _bulk_words(ascii_text: str) -> str:
    """Folded words of ASCII text joined by single spaces, by C-level bytes operations only."""
    return _bulk_bytes(ascii_text.encode("ascii"))


def _bulk_bytes(ascii_bytes: bytes) -> str:
    return _SPACE_RUNS.sub(b" ", ascii_bytes.translate(_ASCII_FOLD)).strip().decode("ascii")


def _by_word(text: str) -> tuple[str, bool]:
    """The folded words, and whether each word folded to exactly one word."""
    found = _WORD.findall(text)
    words = " ".join(word for word in map(_folded, found) if word)
    return words, (words.count(" ") + 1 if words else 0) == len(found)


def _padded(words: str) -> str:
    return f" {words} " if words else " "


def _canonical_by_word(text: str) -> str:
    """The reference: every word found by _WORD and folded alone (tests compare the fast paths)."""
    return _padded(_by_word(text)[0])


def _letters_folding_to_ascii() -> dict[str, str]:
    """Non-ASCII letters that the bulk path can replace one by one before it folds the text: the
    Latin letters whose accents strip off to leave ASCII ("é" → "e", "Ř" → "r"; U+00C0–U+024F
    and U+1E00–U+1EFF).

    Replacing each such letter by its fold gives the same words as folding each word whole:
    fold_word strips the accents of each character on its own (NFKD works character by
    character), what is left is ASCII, and NFC and case folding of ASCII work character by
    character too. Letters whose bare form is not ASCII ("ß", "ł", "ø") are left out, as is
    anything that is not NFC or not a word character by _WORD's rule; text holding them takes
    the word-by-word path. A property test compares both paths on every character here.
    """
    table: dict[str, str] = {}
    for block in (range(0xC0, 0x250), range(0x1E00, 0x1F00)):
        for code in block:
            char = chr(code)
            bare = strip_accents(char)
            folded = fold_word(char)
            if (
                bare.isascii()
                and folded.isascii()
                and folded.isalnum()
                and unicodedata.is_normalized("NFC", char)
                and _WORD.fullmatch(char)
            ):
                table[char] = folded
    return table


_ASCII_LETTERS = _letters_folding_to_ascii()


def split_words(text: str) -> list[str]:
    """The words of a text as written (not folded), by the same boundaries as the canonical form."""
    return list(_WORD.findall(text))


def normalize_term(term: str) -> str:
    """A watchlist term in canonical form without padding: "Jake  Sullivan" → "jake sullivan"."""
    if term.isascii() and term.replace(" ", "").isalnum():  # most terms: plain words
        return " ".join(term.lower().split())
    return canonical_form(unicodedata.normalize("NFC", term)).strip()
