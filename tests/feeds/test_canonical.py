"""URL canonicalisation and entry fingerprints, as tables."""

from __future__ import annotations

import pytest

from feeds.canonical import canonical_link, clean_url, fingerprint, url_key
from feeds.models import Entry


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://news.example/a?utm_source=rss&utm_medium=feed&id=7#comments",
            "https://news.example/a?id=7",
        ),
        ("https://news.example/a?fbclid=XYZ", "https://news.example/a"),
        ("https://news.example/a?gclid=1&msclkid=2&mc_cid=3&_ga=4", "https://news.example/a"),
        # what is kept is kept byte for byte (no re-encoding)
        ("https://news.example/a?q=a%20b&x=%7E", "https://news.example/a?q=a%20b&x=%7E"),
        ("https://news.example/a", "https://news.example/a"),
        ("mailto:desk@news.example", "mailto:desk@news.example"),
        ("", ""),
    ],
)
def test_clean_url_strips_trackers_only(url: str, expected: str) -> None:
    assert clean_url(url) == expected


@pytest.mark.parametrize(
    "variant",
    [
        "https://www.news.example/world/story-1",
        "http://news.example/world/story-1/",
        "https://news.example/world/story-1?utm_campaign=x&fbclid=y",
        "https://m.news.example/world/story-1",
        "https://mobile.news.example/world/story-1",
        "https://amp.news.example/world/story-1",
        "https://news.example/world/story-1/amp",
        "https://news.example/world/story-1/amp/",
        "https://news.example/world/story-1.amp",
        "https://news.example/amp/world/story-1",
        "https://news.example/world/story-1?amp=1",
        "https://news.example/world/story-1?outputType=amp",
        "https://NEWS.example:443/world/story-1#top",
    ],
)
def test_variants_of_one_article_share_a_key(variant: str) -> None:
    assert url_key(variant) == url_key("https://news.example/world/story-1")


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("https://news.example/world/story-1", "https://news.example/world/story-2"),
        ("https://news.example/a?id=1", "https://news.example/a?id=2"),
        ("https://news.example/a", "https://other.example/a"),
        ("https://news.example:8080/a", "https://news.example/a"),
        ("https://news.example/ampersand", "https://news.example/"),
    ],
)
def test_different_articles_keep_different_keys(one: str, other: str) -> None:
    assert url_key(one) != url_key(other)


def test_query_order_does_not_matter_for_the_key() -> None:
    assert url_key("https://n.example/a?b=2&a=1") == url_key("https://n.example/a?a=1&b=2")


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            b'<html><head><link rel="canonical" href="/world/a"></head></html>',
            "https://n.example/world/a",
        ),
        (b'<link rel="Canonical alternate" href="https://n.example/b">', "https://n.example/b"),
        (b"<html><head><link rel=alternate href=/feed></head></html>", None),
        (b'<link rel="canonical" href="javascript:alert(1)">', None),
        (b"", None),
    ],
)
def test_canonical_link(page: bytes, expected: str | None) -> None:
    assert canonical_link(page, "https://n.example/amp/world/a") == expected


def entry(title: str, summary: str, content: str | None = None) -> Entry:
    return Entry("s", "g", "https://n.example/a", title, summary, content)


def test_fingerprint_tells_edits_from_reformatting() -> None:
    base = fingerprint(entry("Talks in Kyiv", "Leaders met.", "<p>Leaders met today.</p>"))
    assert base == fingerprint(
        entry("Talks in  Kyiv", "Leaders met. ", "<p>Leaders  met today.</p>")
    )
    assert base != fingerprint(
        entry("Talks in Kyiv end", "Leaders met.", "<p>Leaders met today.</p>")
    )
    assert base != fingerprint(entry("Talks in Kyiv", "Leaders met.", "<p>Leaders met again.</p>"))
