"""The bulk normalisation paths give exactly what folding word by word gives (the reference).

The bulk paths exist only for speed (bench/match); these tests make sure they never change a
canonical form or a span, on the characters each path claims to handle and on those it must
hand over to the word-by-word path.
"""

from __future__ import annotations

import unicodedata

from hypothesis import given
from hypothesis import strategies as st

from feeds.normalize import (
    _ASCII_LETTERS,
    _TYPOGRAPHIC,
    _WORD,
    _bulk_if_simple,
    _canonical_by_word,
    fold_word,
    normalize,
)

ACCENTED = "".join(sorted(_ASCII_LETTERS))
# Characters the fast path must refuse: letters whose bare form is not ASCII, another script,
# a combining accent (not NFC on its own), a ligature that folds to two letters, a Greek final
# sigma, a fraction and a superscript.
REFUSED = "ßłøæĐКиївσς\u0301\ufb01½²"


def reference(text: str) -> str:
    return _canonical_by_word(unicodedata.normalize("NFC", text))


def test_every_accented_letter_folds_as_its_word_does() -> None:
    for char in ACCENTED:
        for text in (char, f"x{char}Y", f"{char.upper()}{char}9", f"a {char}—{char}’s b"):
            assert normalize(text).canonical == reference(text), (char, text)
            assert fold_word(char).isascii()


def test_the_accented_table_covers_the_usual_latin_letters() -> None:
    for char in "áàâäãåçéèêëíìîïñóòôöõúùûüýÿčćďěňřšťžźżąęőűăşţ":
        assert char in _ASCII_LETTERS, char
    for char in REFUSED:
        assert char not in _ASCII_LETTERS, char


def test_bulk_path_is_taken_for_accented_and_typographic_text() -> None:
    found = _bulk_if_simple("Orbán met Müller in Zürich’s “old” town — São Paulo")
    assert found is not None
    assert found[0] == "orban met muller in zurich s old town sao paulo"
    assert found[1] is _WORD
    assert _bulk_if_simple("Nato’s “flank”") == ("nato s flank", normalize("a’b")._word_finder)
    for char in REFUSED:
        assert _bulk_if_simple(f"Orbán {char} x") is None, char


LATIN = st.sampled_from(ACCENTED)
MIXED = st.text(
    alphabet=st.one_of(
        st.sampled_from("aZ9 .,-'\n\t"),
        LATIN,
        st.sampled_from(_TYPOGRAPHIC),
        st.sampled_from(REFUSED),
    ),
    max_size=60,
)


@given(MIXED)
def test_bulk_normalisation_of_mixed_text_equals_word_by_word(text: str) -> None:
    assert normalize(text).canonical == reference(text)


@given(MIXED)
def test_quick_spans_of_mixed_text_equal_the_reference_spans(text: str) -> None:
    reference_spans = normalize(text).spans
    quick = normalize(text)  # fresh: each span found by the word finder, not from the full list
    words = quick.canonical.split()
    assert len(words) == len(reference_spans)
    position = 1
    for index, word in enumerate(words):
        assert quick.original_span(position, position + len(word)) == reference_spans[index]
        position += len(word) + 1
