"""The matcher: whole words, folding, phrases, all/exclude, evidence. Pure: no servers."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from feeds.match import Matcher, compile_watchlist, window
from feeds.models import Article, Watchlist
from feeds.normalize import _canonical_by_word, normalize, normalize_term


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


# ── the watch language ────────────────────────────────────────────────────────────────────────


def watches(body: str = "", title: str = "", **definition: object) -> bool:
    watchlist = Watchlist("w", keywords=tuple(definition.pop("keywords", ())), **definition)  # type: ignore[arg-type]
    return bool(Matcher([watchlist]).match(article(title, body)))


@pytest.mark.parametrize(
    ("keyword", "body", "expected"),
    [
        ("Kyiv | Kiev | Київ", "shelling near Kiev overnight", True),
        ("Kyiv | Kiev | Київ", "Kyivstar and Kievan Rus", False),
        ("Ukrain*", "the Ukrainian army", True),
        ("Ukrain*", "in Ukraine", True),
        ("Ukrain*", "Ukr is not enough", False),
        ("Jake Sull*", "Jake Sullivan said", True),
        ("=US", "the US said", True),
        ("=US", "tell us more", False),
        ("=US", "Us and them", False),
        ("=NATO", "Nato said", False),
        ("=Orbán", "Viktor Orban said", True),  # case-sensitive, still accent-insensitive
        ("=Orbán", "ORBAN said", False),
    ],
)
def test_term_syntax_in_lists(keyword: str, body: str, expected: bool) -> None:
    assert watches(body, keywords=(keyword,)) is expected


@pytest.mark.parametrize(
    ("query", "title", "body", "expected"),
    [
        ("Ukraine AND (troops OR invasion) -football", "", "Ukraine troops", True),
        ("Ukraine AND (troops OR invasion) -football", "", "Ukraine invasion football", False),
        ("Ukraine AND (troops OR invasion) -football", "", "Ukraine alone", False),
        ("Ukraine OR Nato", "", "Nato summit", True),
        ('"Jake Sullivan" NOT golf', "", "Jake Sullivan plays golf", False),
        ("intitle:Ukraine", "Ukraine talks", "nothing", True),
        ("intitle:Ukraine", "Talks", "Ukraine", False),
        ("inbody:Ukraine", "Ukraine talks", "nothing", False),
        ("Putin AROUND(3) Macron", "", "Putin met French President Macron", True),
        ("Putin AROUND(2) Macron", "", "Putin met French President Macron", False),
        ("Putin AROUND(2) Macron", "", "Macron, visiting Putin", True),
        ("Putin AROUND(2) Macron", "Putin", "Macron", False),  # different fields
        ("(Kyiv | Kiev) NEAR/1 drone*", "", "Kiev: drones struck", True),
    ],
)
def test_queries(query: str, title: str, body: str, expected: bool) -> None:
    assert watches(body, title, query=query) is expected


def test_site_and_source_in_a_query() -> None:
    matcher = Matcher([Watchlist("w", (), query="Nato site:bbc.co.uk")])
    on_bbc = Article("https://www.bbc.co.uk/news/1", "Nato", ("x",), "")
    elsewhere = Article("https://notbbc.co.uk/news/1", "Nato", ("x",), "")
    assert matcher.match(on_bbc) and not matcher.match(elsewhere)
    by_source = Matcher([Watchlist("w", (), query="Nato -source:tabloid")])
    assert by_source.match(on_bbc, "wire") and not by_source.match(on_bbc, "tabloid")


def test_language_filter() -> None:
    matcher = Matcher([Watchlist("w", ("Nato",), languages=("en", "fr"))])
    english = Article("u", "Nato", (), "", language="en-GB")
    german = Article("u", "Nato", (), "", language="de")
    unknown = Article("u", "Nato", (), "")
    assert matcher.match(english) and not matcher.match(german) and matcher.match(unknown)


def test_min_mentions_ignores_a_passing_mention() -> None:
    watchlist = Watchlist("w", ("Nato",), min_mentions=2)
    passing = "A long story about farming. " * 10 + "Nato was mentioned once."
    assert not Matcher([watchlist]).match(article(body=passing))
    assert Matcher([watchlist]).match(article(body=passing + " Nato again."))
    assert Matcher([watchlist]).match(article(title="Nato summit", body=passing))


def test_regex_terms_are_bounded_and_off_by_default() -> None:
    with pytest.raises(ValueError, match="regular expressions are off"):
        Matcher([Watchlist("w", (), query="/nato/")])
    matcher = Matcher([Watchlist("w", (), query=r"/\bF-?35[AB]?\b/ jets", allow_regex=True)])
    [match] = matcher.match(article(body="The F-35A jets landed."))
    assert match.terms == (r"/\bF-?35[AB]?\b/", "jets")
    assert "F-35A" in match.snippet
    # A pattern that makes backtracking engines take exponential time is linear in RE2.
    hostile = Matcher([Watchlist("w", (), query="/(a+)+b/", allow_regex=True)])
    assert not hostile.match(article(body="a" * 50_000 + "c"))


def test_evidence_of_a_query_lists_positive_terms_only() -> None:
    matcher = Matcher([Watchlist("w", (), query="(Kyiv | Kiev) troops -football")])
    [match] = matcher.match(article(title="Kiev", body="Troops in Kyiv. Kyiv troops."))
    assert [(h.term, h.count, h.fields) for h in match.hits] == [
        ("Kyiv | Kiev", 3, ("title", "body")),
        ("troops", 2, ("body",)),
    ]


def test_explain_says_why_and_why_not() -> None:
    matcher = Matcher([Watchlist("w", ("Ukraine",), exclude=("football",), min_mentions=2)])
    lines = matcher.explain(article(body="Ukraine played football"), "w")
    assert lines[0] == "watchlist w: does not match"
    assert lines[1:] == [
        "rule: Ukraine -football",
        "  ✗ all of:",
        "    ✓ Ukraine: found 1× in body",
        "    ✗ none of:",
        "      ✓ football: found 1× in body",
    ]
    lines = matcher.explain(article(body="Ukraine said"), "w")
    assert lines[0] == "watchlist w: does not match"
    assert lines[-1] == "filter: 1 mention(s) in the standfirst and body, min_mentions is 2"
    assert matcher.explain(article(body="Ukraine. Ukraine."), "w")[0] == "watchlist w: MATCHES"
    with pytest.raises(KeyError, match="no watchlist"):
        matcher.explain(article(), "nope")


WORDS = ["nato", "kyiv", "troops", "jake sullivan", "ukrain*", "=US", "kiev | київ", "drone"]


@given(
    rules=st.lists(
        st.tuples(
            st.sampled_from(WORDS),
            st.sampled_from(WORDS),
            st.sampled_from([" ", " OR ", " -", " AROUND(1) "]),
        ),
        min_size=1,
        max_size=8,
    ),
    body=st.lists(
        st.sampled_from(
            [
                "Nato",
                "Kyiv",
                "troops",
                "Jake Sullivan",
                "Ukrainian",
                "US",
                "us",
                "Київ",
                "drones",
                "the",
            ]
        ),
        max_size=30,
    ),
)
def test_percolator_never_changes_an_answer(
    rules: list[tuple[str, str, str]], body: list[str]
) -> None:
    def quoted(term: str) -> str:
        return f"({term})" if "|" in term else (f'"{term}"' if " " in term else term)

    watchlists = [
        Watchlist(f"w{i}", (), query=f"{quoted(a)}{op}{quoted(b)}")
        for i, (a, b, op) in enumerate(rules)
        if not (op == " -" and a == b)
    ]
    if not watchlists:
        return
    text = article(body=" ".join(body))
    assert Matcher(watchlists).match(text) == Matcher(watchlists, percolate=False).match(text)


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=80))
def test_bulk_normalisation_equals_word_by_word(text: str) -> None:
    assert normalize(text).canonical == _canonical_by_word(unicodedata.normalize("NFC", text))


@given(st.text(alphabet="abc XYZ’“—\u00a0-é", max_size=60))
def test_spans_cover_every_canonical_word(text: str) -> None:
    normalized = normalize(text)
    words = normalized.canonical.split()
    assert len(normalized.spans) == len(words) == len(normalized.word_starts)
    for word, (start, end) in zip(words, normalized.spans, strict=True):
        assert normalize_term(normalized.original[start:end]).split()[0] == word.split()[0]


@given(st.text(alphabet="ab Z9’“—\u00a0-,.é\nКиїв\ufb01\ufdfa\u0301", max_size=60))
def test_quick_spans_equal_the_reference_spans(text: str) -> None:
    reference = normalize(text).spans
    quick = normalize(text)  # a fresh one: spans found word by word, not from the full list
    starts = [
        i for i, char in enumerate(quick.canonical) if char != " " and quick.canonical[i - 1] == " "
    ]
    assert len(starts) == len(reference)
    for index, start in enumerate(starts):
        end = quick.canonical.index(" ", start)
        assert quick.original_span(start, end) == reference[index]
        assert quick.original_words(index, index) == [text_of(quick.original, reference[index])]


def text_of(text: str, span: tuple[int, int]) -> str:
    return text[span[0] : span[1]]


def test_building_restores_the_garbage_collector_state() -> None:
    import gc

    assert gc.isenabled()
    with pytest.raises(ValueError):
        Matcher([Watchlist("ok", ("a",)), Watchlist("bad", ("--",))])
    assert gc.isenabled()
    gc.disable()
    try:
        Matcher([Watchlist("ok", ("a",))])
        assert not gc.isenabled()
    finally:
        gc.enable()


PLAN_WORDS = [*WORDS, "intitle:nato", "inbody:kyiv", "(nato OR troops)", "(kyiv | drone)"]


@given(
    query=st.lists(
        st.tuples(st.sampled_from(["", "-", "NOT ", "("]), st.sampled_from(PLAN_WORDS)),
        min_size=1,
        max_size=6,
    ),
    joins=st.lists(st.sampled_from([" ", " OR ", " AROUND(2) "]), min_size=6, max_size=6),
    title=st.lists(st.sampled_from(["Nato", "US", "drone", "the"]), max_size=4),
    body=st.lists(
        st.sampled_from(["Nato", "Kyiv", "troops", "Jake Sullivan", "Ukrainian", "US", "us"]),
        max_size=12,
    ),
)
def test_planned_rules_agree_with_the_tree(
    query: list[tuple[str, str]], joins: list[str], title: list[str], body: list[str]
) -> None:
    """The set-based plan of each rule gives _evaluate's answer on its tree, whatever the rule."""
    text = f"{query[0][0]}{query[0][1]}"
    for (prefix, word), join in zip(query[1:], joins, strict=False):
        text += f"{join}{prefix}{word}"
    text += ")" * sum(prefix == "(" for prefix, _ in query)
    watchlists = []
    for watchlist in (
        Watchlist("query", (), query=text),
        Watchlist("lists", tuple(w for _, w in query[:2]), tuple(w for _, w in query[2:4])),
        Watchlist("exclude", ("nato",), (), tuple(w for _, w in query)),
    ):
        try:
            compile_watchlist(watchlist)
        except ValueError:
            continue  # not a valid definition: nothing to compare
        watchlists.append(watchlist)
    matcher = Matcher(watchlists)
    scan = matcher._scan(article(" ".join(title), " ".join(body)), None)
    for rule in matcher._rules:
        assert matcher._holds(rule.plan, scan) == matcher._evaluate(rule.tree, scan), rule.tree


def test_usual_watchlists_are_planned_as_sets_alone() -> None:
    matcher = Matcher(
        [
            Watchlist("lists", ("Nato", "Kyiv | Kiev"), ("troops",), ("football", "cup")),
            Watchlist("query", (), query="(nato OR troops) -football drone"),
            Watchlist("scoped", (), query="intitle:nato drone"),
        ]
    )
    lists, query, scoped = (rule.plan for rule in matcher._rules)
    assert (len(lists[0]), len(lists[1]), lists[2]) == (2, 2, ())  # one set per exclusion
    assert (len(query[0]), len(query[1]), query[2]) == (2, 1, ())
    assert len(scoped[0]) == 1 and len(scoped[2]) == 1  # the title scope is left to _evaluate


def test_a_large_build_freezes_its_objects_and_a_failed_one_does_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import gc

    import feeds.match

    monkeypatch.setattr(feeds.match, "FREEZE_FROM_WATCHLISTS", 2)
    gc.unfreeze()
    try:
        with pytest.raises(ValueError):
            Matcher([Watchlist("ok", ("a",)), Watchlist("bad", ("--",))])
        assert gc.get_freeze_count() == 0 and gc.isenabled()
        matcher = Matcher([Watchlist("a", ("nato",)), Watchlist("b", ("kyiv",))])
        assert gc.get_freeze_count() > 0 and gc.isenabled()
        assert matcher.match(article(body="Nato and Kyiv"))
    finally:
        gc.unfreeze()
