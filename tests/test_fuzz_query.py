"""Fuzzing the watch language: any string is either a tree or a QueryError whose offset lies
inside the text (so the settings loader can point at a line and column), never another exception
and never a long wait.

Strings are drawn three ways: free text over the language's own alphabet (operators, quotes,
brackets, stars, slashes, digits and a few letters, so the parser's corners are reached far more
often than by arbitrary Unicode), token sequences that look like queries, and arbitrary Unicode.
The time bound is Hypothesis' per-example deadline; the cases that matter most (deep nesting,
long operator runs) are explicit examples too.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from feeds.match import Matcher
from feeds.models import Article, Watchlist
from feeds.query import MAX_DEPTH, QueryError, parse_query, parse_term, render

ALPHABET = st.sampled_from(list('abcKyivУкр é ()"|*-=:/\\0123456789 ANDORNOTAROUNDNEARintitle'))
TOKENS = st.sampled_from(
    [
        "Kyiv", "Ukrain*", "a*", '"Jake Sullivan"', '"', "(", ")", "AND", "OR", "NOT", "-", "|",
        "AROUND(5)", "AROUND(", "AROUND(99999999999999999999)", "NEAR/3", "NEAR", "NEAR/",
        "intitle:", "inbody:", "site:", "site:bbc.co.uk", "source:", "source:wire", "=US", "=",
        "/k.*v/", "/(/", "/a{1000}{1000}/", "//", "*", "**", "Київ", "\u0301", "\x00", "\n",
    ]
)  # fmt: skip
QUERIES = st.one_of(
    st.text(ALPHABET, max_size=80),
    st.lists(TOKENS, max_size=25).map(" ".join),
    st.lists(TOKENS, max_size=25).map("".join),
    st.text(max_size=60),
)
ARTICLE = Article(
    url="https://www.bbc.co.uk/news/1",
    title="Kyiv talks",
    paragraphs=("Jake Sullivan said US troops in Ukraine would stay.",),
    html="",
)


def check(text: str, allow_regex: bool) -> None:
    try:
        tree = parse_query(text, allow_regex=allow_regex)
    except QueryError as error:
        assert 0 <= error.offset <= len(text), (error.offset, len(text))
        line, column = error.line_column(text)
        assert line >= 1 and column >= 1
        assert error.message.strip()
        return
    # A tree that parsed can be shown (render is for messages: it need not parse back the same,
    # e.g. an alias group's phrases lose their quotes) and matched.
    assert render(tree).strip()
    Matcher([Watchlist("fuzz", (), query=text, allow_regex=allow_regex)]).match(ARTICLE, "wire")


@settings(max_examples=300, deadline=timedelta(seconds=1))
@given(text=QUERIES, allow_regex=st.booleans())
@example(text="(" * 5000 + "Kyiv" + ")" * 5000, allow_regex=False)
@example(text="Kyiv " + "AND " * 5000 + "Kyiv", allow_regex=False)
@example(text="-" * 5000 + "Kyiv", allow_regex=False)
@example(text="NOT " * 3000 + "Kyiv", allow_regex=False)
@example(text=" | ".join(["Kyiv"] * 5000), allow_regex=False)
@example(text="/(a+)+$/ Kyiv", allow_regex=True)
@example(text='"' * 999, allow_regex=False)
@example(text="AROUND(5)", allow_regex=False)
@example(text="Kyiv AROUND(5)", allow_regex=False)
@example(text="intitle:", allow_regex=False)
@example(text="intitle:(Kyiv", allow_regex=False)
def test_any_query_is_a_tree_or_a_located_error(text: str, allow_regex: bool) -> None:
    check(text, allow_regex)


@settings(max_examples=300, deadline=timedelta(seconds=1))
@given(text=st.one_of(st.text(ALPHABET, max_size=40), st.text(max_size=40)))
@example(text="|")
@example(text="a* | b")
@example(text="=")
def test_any_term_is_a_term_or_a_located_error(text: str) -> None:
    try:
        term = parse_term(text)
    except QueryError as error:
        assert 0 <= error.offset <= len(text), (error.offset, len(text))
        return
    assert term.patterns


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("(" * 5000 + "Kyiv" + ")" * 5000, 100),
        ("-" * 5000 + "Kyiv", 100),
        ("NOT " * 3000 + "Kyiv", 400),
        ("intitle:" * 200 + "Kyiv", 800),
        ("Kyiv (" + "NOT (" * 60 + "x" + ")" * 61, 6 + 49 * 5 + 4),
    ],
)
def test_deep_nesting_is_a_located_error_not_a_recursion_error(text: str, offset: int) -> None:
    """Regression (found by the fuzzer): 1,000 nested negations or groups overflowed the stack."""
    with pytest.raises(QueryError) as caught:
        parse_query(text)
    assert caught.value.message == f"nested more than {MAX_DEPTH} levels deep"
    assert caught.value.offset == offset


def test_nesting_up_to_the_limit_is_fine() -> None:
    tree = parse_query("(" * MAX_DEPTH + "Kyiv" + ")" * MAX_DEPTH)
    assert render(tree) == "Kyiv"
    assert parse_query("Kyiv " + "NOT " * (MAX_DEPTH - 1) + "x")
