"""The watch language: term syntax, query syntax, one tree for both, errors with positions."""

from __future__ import annotations

import re

import pytest

from feeds.normalize import normalize_term
from feeds.query import (
    And,
    Near,
    Not,
    Or,
    Pattern,
    QueryError,
    Regex,
    Site,
    SourceIs,
    Term,
    parse_query,
    parse_term,
    render,
    watchlist_tree,
)


def term(label: str, *words: str, scope: str = "any") -> Term:
    return Term(label, tuple(Pattern(w) for w in (words or (label.lower(),))), scope)  # type: ignore[arg-type]


def test_term_syntax() -> None:
    assert parse_term("Jake  Sullivan") == Term("Jake  Sullivan", (Pattern("jake sullivan"),))
    assert parse_term("Kyiv | Kiev | Київ") == Term(
        "Kyiv | Kiev | Київ", (Pattern("kyiv"), Pattern("kiev"), Pattern(normalize_term("Київ")))
    )
    assert parse_term("Ukrain*") == Term("Ukrain*", (Pattern("ukrain", prefix=True),))
    assert parse_term("=US") == Term("=US", (Pattern("us", exact="US"),))
    assert parse_term('="Orbán Viktor"') == Term(
        "=Orbán Viktor", (Pattern("orban viktor", exact="Orban Viktor"),)
    )


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("--", "no letters or digits", 0),
        ("Kyiv | ", "empty alternative", 6),
        ("Uk*", "too short", 0),
        ("Ukr*aine", "may only end", 3),
        ('"Jake Sullivan', "unbalanced quote", 0),
    ],
)
def test_term_errors(text: str, message: str, offset: int) -> None:
    with pytest.raises(QueryError, match=message) as caught:
        parse_term(text)
    assert caught.value.offset == offset


def test_both_forms_compile_to_the_same_tree() -> None:
    from_lists = watchlist_tree(
        keywords=["Ukraine", "Nato", "Jake Sullivan"], all_terms=["troops"], exclude=["football"]
    )
    from_query = parse_query('(Ukraine OR Nato OR "Jake Sullivan") AND troops -football')
    assert from_lists == from_query
    assert from_query == And(
        (
            Or((term("Ukraine"), term("Nato"), term("Jake Sullivan", "jake sullivan"))),
            term("troops"),
            Not(term("football")),
        )
    )


def test_query_operators_and_precedence() -> None:
    assert parse_query("a b OR c") == Or((And((term("a"), term("b"))), term("c")))
    assert parse_query("a NOT b") == parse_query("a -b") == And((term("a"), Not(term("b"))))
    assert parse_query("Russia-Ukraine") == term("Russia-Ukraine", "russia ukraine")
    assert parse_query("Kyiv|Kiev drone") == And(
        (Term("Kyiv | Kiev", (Pattern("kyiv"), Pattern("kiev"))), term("drone"))
    )
    assert parse_query("Putin AROUND(3) Macron") == Near(term("Putin"), term("Macron"), 3)
    assert parse_query("Putin NEAR/2 Macron") == Near(term("Putin"), term("Macron"), 2)
    assert parse_query("Putin NEAR Macron") == Near(term("Putin"), term("Macron"), 10)
    assert parse_query("intitle:(Kyiv OR Kiev) inbody:drone") == And(
        (
            Or((term("Kyiv", scope="title"), term("Kiev", scope="title"))),
            term("drone", scope="body"),
        )
    )
    assert parse_query("Nato site:www.BBC.co.uk source:reuters") == And(
        (term("Nato"), Site("bbc.co.uk"), SourceIs("reuters"))
    )
    assert parse_query("/nato|otan/ x", allow_regex=True) == And((Regex("nato|otan"), term("x")))


@pytest.mark.parametrize(
    ("query", "message", "column"),
    [
        ("", "empty", 1),
        ("Ukraine AND", "ends where a term was expected", 12),
        ("(Ukraine OR Nato", 'unclosed "("', 1),
        ("Ukraine)", 'unbalanced ")"', 8),
        ('Ukraine "Jake Sullivan', "unterminated", 9),
        ("Ukraine OR OR Nato", '"OR" needs a term', 12),
        ("-football", "only excludes", 1),
        ("Ukraine /nato/", "regular expressions are off", 9),
        ("Putin AROUND(x) Macron", "bad proximity", 7),
        ("Putin AROUND(3) (a OR b)", "joins two words", 7),
        ("site: Ukraine", "needs a value", 1),
        ("Ukraine ()", "empty parentheses", 9),
        ("Ukraine Uk*", "too short", 9),
    ],
)
def test_query_errors_point_at_the_mistake(query: str, message: str, column: int) -> None:
    with pytest.raises(QueryError, match=re.escape(message)) as caught:
        parse_query(query)
    assert caught.value.line_column(query) == (1, column)


def test_bad_regex_is_refused_with_reason() -> None:
    with pytest.raises(QueryError, match="bad regular expression"):
        parse_query(r"x /(a)\1/", allow_regex=True)
    with pytest.raises(QueryError, match="empty text"):
        parse_query("x /a*/", allow_regex=True)


def test_error_position_on_a_later_line() -> None:
    query = "Ukraine\nAND (troops"
    with pytest.raises(QueryError) as caught:
        parse_query(query)
    assert caught.value.line_column(query) == (2, 5)


def test_render_round_trips() -> None:
    for query in [
        'intitle:"Jake Sullivan" OR (Kyiv | Kiev) AROUND(5) drone*',
        "a (b OR c) -d site:bbc.co.uk source:wire",
    ]:
        tree = parse_query(query)
        assert parse_query(render(tree)) == tree
