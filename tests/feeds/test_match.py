"""The matcher: whole words, folding, phrases, all/exclude, evidence. Pure: no servers."""

from __future__ import annotations

import pytest

from feeds.match import Matcher, window
from feeds.models import Article, Watchlist
from feeds.normalize import normalize, normalize_term


def article(title: str = "", body: str = "", standfirst: str | None = None) -> Article:
    return Article(
        url="https://example.org/a", title=title, paragraphs=(body,), html="", standfirst=standfirst
    )


def matched(watchlist: Watchlist, title: str = "", body: str = "") -> bool:
    return bool(Matcher([watchlist]).match(article(title, body)))


UKRAINE = Watchlist("ukraine", keywords=("Ukraine", "Nato", "Jake Sullivan", "Kyiv", "Київ"))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Troops gathered near Ukraine on Sunday.", True),
        ("UKRAINE and its allies", True),
        ("Nato's eastern flank", True),  # possessive with a straight apostrophe
        ("Nato’s eastern flank", True),  # and with a curly one
        ("the Russia-Ukraine border", True),  # hyphen between words
        ("Natoli said nothing", False),  # a word that merely starts with a term
        ("Kyivstar, the mobile operator", False),
        ("Київстар, мобільний оператор", False),
        ("Мітинг у Києві та Київ", True),
        ("adviser Jake\u00a0Sullivan warned", True),  # non-breaking space inside a phrase
        ("adviser Jake\nSullivan warned", True),  # line break inside a phrase
        ("Jake met Sullivan", False),  # both words, not the phrase
        ("", False),
    ],
)
def test_whole_words_and_phrases(body: str, expected: bool) -> None:
    assert matched(UKRAINE, body=body) is expected


def test_accent_folding_both_ways() -> None:
    assert matched(Watchlist("hu", keywords=("Orbán",)), body="Viktor Orban spoke")
    assert matched(Watchlist("hu", keywords=("Orban",)), body="Viktor Orbán spoke")
    assert matched(Watchlist("de", keywords=("Strasse",)), body="Die Straße ist lang")


def test_exclude_suppresses_and_all_is_required() -> None:
    watchlist = Watchlist("w", keywords=("Ukraine",), all_of=("troops",), exclude=("football",))
    assert matched(watchlist, body="Ukraine moved troops")
    assert not matched(watchlist, body="Ukraine moved")
    assert not matched(watchlist, body="Ukraine troops watched football")


def test_source_filter() -> None:
    watchlist = Watchlist("w", keywords=("Ukraine",), sources=("bbc",))
    matcher = Matcher([watchlist])
    assert matcher.match(article(body="Ukraine"), source="bbc")
    assert not matcher.match(article(body="Ukraine"), source="other")


def test_evidence_counts_fields_and_snippet() -> None:
    body = ("Talks went on all day. " * 20) + (
        "Russia massed troops near Ukraine, officials said. Ukraine denied it."
    )
    [match] = Matcher([UKRAINE]).match(article(title="Ukraine talks", body=body))
    [hit] = match.hits
    assert (hit.term, hit.count, hit.fields) == ("Ukraine", 3, ("title", "body"))
    assert "near Ukraine, officials said" in match.snippet
    assert match.snippet.startswith("…")
    assert len(match.snippet) <= 260


def test_many_watchlists_one_pass() -> None:
    watchlists = [Watchlist(f"w{i}", keywords=(f"term{i}",)) for i in range(500)]
    matches = Matcher(watchlists).match(article(body="term7 and term499 but not term5000"))
    assert [m.watchlist for m in matches] == ["w7", "w499"]


def test_term_without_letters_is_rejected() -> None:
    with pytest.raises(ValueError, match="no letters"):
        Matcher([Watchlist("w", keywords=("--",))])


def test_normalize_maps_hits_back_to_original_text() -> None:
    text = normalize("Viktor ORBÁN’s party")
    start = text.canonical.index("orban")
    assert text.original_span(start, start + len("orban")) == (7, 12)
    assert normalize_term("  Jake   SULLIVAN ") == "jake sullivan"


def test_window_cuts_at_spaces() -> None:
    text = "alpha beta gamma delta epsilon zeta eta theta"
    start = text.index("delta")
    assert window(text, start, start + 5, 20) == "…delta epsilon…"
    assert window(text, start, start + 5, 30) == "…gamma delta epsilon zeta eta…"
    assert window(text, 0, 5, 1000) == text
