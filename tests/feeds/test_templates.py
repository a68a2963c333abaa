"""feeds.templates: per-site learned boilerplate, on synthetic pages of one site.

The pages are built the way news sites build them: a different story on each page, and inside the
article container the same appeal worded so that no phrase rule of feeds.boilerplate knows it.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.boilerplate import boilerplate_reason
from feeds.extract import clean_page, extract_article
from feeds.templates import (
    MIN_PAGES,
    MIN_SIGHTINGS,
    SiteTemplate,
    fingerprint,
    learn,
    site_of,
)

APPEAL = (
    "Quality reporting takes time and money. Readers like you keep the Valley Gazette going; "
    "a few pounds a month is all it takes to make sure we are still here next year."
)
PROMPT = "Got thoughts on this story? The Valley Gazette letters desk reads every single one."
STORIES = [
    ("Bridge reopens after repairs", "river bridge", "council engineers"),
    ("School wins national award", "primary school", "head teacher"),
    ("Storm damages harbour wall", "harbour wall", "coastguard"),
    ("New bus route announced", "bus route", "transport officials"),
    ("Library extends opening hours", "town library", "volunteers"),
    ("Farmers market returns", "farmers market", "stallholders"),
    ("Hospital opens new ward", "hospital ward", "nurses"),
    ("Festival draws record crowd", "summer festival", "organisers"),
    ("Road closed for resurfacing", "high street", "contractors"),
    ("Museum unveils fossil find", "museum", "curators"),
    ("Swimming pool to be rebuilt", "swimming pool", "residents"),
    ("Rail line electrified", "rail line", "network engineers"),
    ("Police appeal after burglary", "jewellery shop", "detectives"),
    ("Council sets new budget", "council budget", "councillors"),
]


def story_paragraphs(index: int) -> list[str]:
    title, thing, people = STORIES[index % len(STORIES)]
    return [
        f"The {thing} was at the centre of attention on Tuesday, as {people} described a week "
        f"that few in the valley will forget. ({title}, report number {index}.)",
        f"Work on the {thing} began in the spring and, according to {people}, went faster than "
        "anyone had planned, despite the wet weather of the last month.",
        f"Asked what comes next, {people} said the {thing} would be reviewed again in the autumn "
        "and that the public would be consulted before any further change.",
    ]


def page(index: int, *, extra: str | None = None) -> str:
    """One article page of the site: headline, three story paragraphs with the site's appeal and
    prompt inside the article, and (optionally) one more paragraph."""
    paragraphs = story_paragraphs(index)
    body = [paragraphs[0], APPEAL, paragraphs[1], paragraphs[2]]
    if extra:
        body.insert(3, extra)
    body.append(PROMPT)
    title = STORIES[index % len(STORIES)][0]
    return (
        f"<html lang='en'><head><title>{title}</title></head><body>"
        "<nav><a href='/'>Home</a> <a href='/news'>News</a></nav>"
        f"<article><h1>{title}</h1>"
        + "".join(f"<p>{text}</p>" for text in body)
        + "</article><footer>© Valley Gazette</footer></body></html>"
    )


def url(index: int) -> str:
    return f"https://www.valley-gazette.example/news/{index}.html"


def learned_template(pages: int) -> SiteTemplate:
    """The template after the site's first `pages` pages went through cleaning."""
    template = SiteTemplate(site_of(url(0)))
    for index in range(pages):
        cleaned = clean_page(page(index), url(index), template)
        template = learn(template, cleaned.fingerprints).template
    return template


def test_the_appeal_is_unknown_to_the_phrase_rules() -> None:
    """The premise of the other tests: only learning can catch this site's furniture."""
    assert boilerplate_reason(APPEAL) is None
    assert boilerplate_reason(PROMPT) is None
    article = extract_article(page(0), url(0))
    assert APPEAL in article.paragraphs and PROMPT in article.paragraphs


def test_furniture_is_learned_and_dropped() -> None:
    template = learned_template(MIN_PAGES + 2)
    fresh = len(STORIES) - 1
    article = extract_article(page(fresh), url(fresh), template)
    assert article.paragraphs == tuple(story_paragraphs(fresh))
    assert APPEAL not in article.html and PROMPT not in article.html
    # Without the template, the same page keeps them: nothing else changed.
    assert APPEAL in extract_article(page(fresh), url(fresh)).paragraphs


def test_nothing_is_dropped_before_the_site_has_enough_pages() -> None:
    template = learned_template(MIN_PAGES - 1)
    assert template.boilerplate() == frozenset()
    article = extract_article(page(MIN_PAGES), url(MIN_PAGES), template)
    assert APPEAL in article.paragraphs


def test_text_seen_once_elsewhere_is_never_dropped() -> None:
    """A paragraph quoted by a follow-up story (seen on one earlier page) survives, however the
    template has been learned."""
    quoted = "The minister said the valley had been let down for a decade and promised a review."
    template = SiteTemplate(site_of(url(0)))
    for index in range(MIN_PAGES + 4):
        extra = quoted if index == 3 else None
        cleaned = clean_page(page(index, extra=extra), url(index), template)
        template = learn(template, cleaned.fingerprints).template
    follow_up = page(MIN_PAGES + 4, extra=quoted)
    article = extract_article(follow_up, url(MIN_PAGES + 4), template)
    assert quoted in article.paragraphs
    assert APPEAL not in article.paragraphs


@pytest.mark.parametrize("sightings", range(1, MIN_SIGHTINGS))
def test_a_block_needs_several_sightings_whatever_its_share(sightings: int) -> None:
    """Even on a young site where a block was on every page so far, fewer than MIN_SIGHTINGS
    pages never make it furniture."""
    template = SiteTemplate("site.example")
    for _ in range(sightings):
        template = learn(template, ["shared", f"unique-{template.pages}"]).template
    assert not template.is_boilerplate("shared")


def test_a_block_on_a_minority_of_recent_pages_is_kept() -> None:
    """A running story's background paragraph, on a third of the pages, is not furniture."""
    template = SiteTemplate("site.example")
    for index in range(60):
        keys = [f"story-{index}", "footer"] + (["background"] if index % 3 == 0 else [])
        template = learn(template, keys).template
    assert template.is_boilerplate("footer")
    assert not template.is_boilerplate("background")
    assert not template.is_boilerplate("story-59")


def test_retired_furniture_is_forgotten_and_unique_text_does_not_pile_up() -> None:
    template = SiteTemplate("site.example")
    for index in range(40):
        template = learn(template, [f"story-{index}", "old appeal"]).template
    assert template.is_boilerplate("old appeal")
    for index in range(40, 140):  # a redesign: the appeal is gone, a new one comes
        template = learn(template, [f"story-{index}", "new appeal"]).template
    assert template.is_boilerplate("new appeal")
    assert not template.is_boilerplate("old appeal")
    assert "old appeal" not in template.blocks
    # Blocks seen once are dropped from the record after a few dozen pages: bounded storage.
    assert len(template.blocks) < 40


def test_learn_reports_what_changed() -> None:
    template = SiteTemplate("site.example")
    first = learn(template, ["a", "b", "a"])
    assert first.template.pages == 1
    assert set(first.updated) == {"a", "b"}
    assert first.updated["a"].sightings == 1 and first.updated["a"].weight == 1.0
    second = learn(first.template, ["a"])
    assert second.updated["a"].sightings == 2
    assert second.template.blocks["b"] == first.template.blocks["b"]  # untouched, decays lazily


def test_the_template_is_ignored_when_it_would_remove_most_of_a_page() -> None:
    """A page that is mostly furniture by the template's account (a site whose feed keeps
    pointing at one page, an index page) is cleaned without it."""
    text_page = page(0)
    cleaned = clean_page(text_page, url(0))
    template = SiteTemplate("valley-gazette.example")
    for _ in range(MIN_PAGES + 2):
        template = learn(template, cleaned.fingerprints).template
    article = extract_article(text_page, url(0), template)
    assert article.paragraphs == cleaned.article.paragraphs


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("We’d love your support.", "we'd love your support"),
        ("Share  this\u00a0story", "share this story"),
    ],
)
def test_fingerprints_ignore_case_punctuation_and_spacing(first: str, second: str) -> None:
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(first + " now")


@pytest.mark.parametrize(
    ("address", "site"),
    [
        ("https://www.Example.co.uk/news/1", "example.co.uk"),
        ("http://news.example.com:8080/a?b", "news.example.com"),
        ("not a url", ""),
    ],
)
def test_site_of(address: str, site: str) -> None:
    assert site_of(address) == site


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sets(st.sampled_from("abcdefgh"), max_size=6), min_size=1, max_size=40),
)
def test_learning_invariants(pages: list[set[str]]) -> None:
    """Whatever the history: the page count is exact, a block's sightings never exceed the pages
    it was on, fewer than MIN_SIGHTINGS sightings never make furniture, and a block on every
    page of a site with enough pages always is furniture."""
    template = SiteTemplate("site.example")
    for keys in pages:
        template = learn(template, keys).template
    assert template.pages == len(pages)
    for key, stat in template.blocks.items():
        assert 1 <= stat.sightings <= sum(key in keys for keys in pages)
        assert 0 < stat.weight_at(template.pages) <= template.recent_pages + 1e-9
        if stat.sightings < MIN_SIGHTINGS:
            assert not template.is_boilerplate(key)
    everywhere = set.intersection(*pages)
    if len(pages) >= MIN_PAGES:
        assert everywhere <= template.boilerplate()


@settings(max_examples=40, deadline=None)
@given(page=st.text(max_size=400), keys=st.lists(st.text(max_size=30), max_size=20))
def test_cleaning_with_any_template_never_raises(page: str, keys: list[str]) -> None:
    template = SiteTemplate("site.example")
    for _ in range(MIN_PAGES + 1):
        template = learn(template, [fingerprint(key) for key in keys]).template
    article = extract_article("<html><body><p>" + page + "</p></body></html>", url(0), template)
    assert article.empty_reason is not None or article.paragraphs
