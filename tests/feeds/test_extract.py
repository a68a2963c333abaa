"""feeds.extract: the seed page end to end, sanitised HTML, bad input, and a fuzz test."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.boilerplate import boilerplate_reason, judge_blocks
from feeds.extract import decode_html, extract_article
from feeds.models import Article

REPO = Path(__file__).resolve().parents[2]
SEED_PAGE = REPO / "config/demo-site/articles/macron-putin-talks.html"
# A copy of shared/samples/seed-article (the hand-checked expectations for the seed page).
SEED_DIR = REPO / "tests/fixtures/seed-article"
SEED_URL = "https://demo.example/articles/macron-putin-talks.html"


@pytest.fixture(scope="module")
def expected() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SEED_DIR / "expected.json").read_text("utf-8"))
    return data


@pytest.fixture(scope="module")
def seed() -> Article:
    return extract_article(SEED_PAGE.read_bytes(), SEED_URL)


def test_seed_body_is_exactly_the_article(seed: Article, expected: dict[str, Any]) -> None:
    assert seed.empty_reason is None
    assert list(seed.paragraphs) == expected["body_paragraphs"]


def test_seed_metadata(seed: Article, expected: dict[str, Any]) -> None:
    assert seed.title == expected["title"]
    assert seed.standfirst == expected["subtitle"]
    assert seed.author == expected["author"]
    assert seed.published is not None and seed.published.tzinfo is not None
    assert seed.published == datetime.fromisoformat(expected["published"])
    assert seed.language == "en-GB"
    assert seed.url.startswith("https://www.independent.co.uk/")


def test_seed_has_no_boilerplate_anywhere(seed: Article, expected: dict[str, Any]) -> None:
    fields = {
        "text": seed.text,
        "html": seed.html,
        "title": seed.title,
        "standfirst": seed.standfirst or "",
    }
    for line in expected["boilerplate_lines"]:
        for name, value in fields.items():
            assert line not in value, f"boilerplate {line[:40]!r} found in {name}"
    for value in fields.values():
        assert "logged inPlease" not in value


def test_boilerplate_rules_on_the_naive_scrape(expected: dict[str, Any]) -> None:
    """On the page as a naive scraper sees it, the rules alone keep the body and drop the rest."""
    lines = [
        line
        for line in (SEED_DIR / "page-text.txt").read_text("utf-8").splitlines()
        if line.strip()
    ]
    verdicts = judge_blocks(
        lines,
        title=expected["title"],
        standfirst=expected["subtitle"],
        author=expected["author"],
        dateline="Monday 07 February 2022 13:15 EST",
    )
    assert [v.text for v in verdicts if v.reason is None] == expected["body_paragraphs"]


@pytest.mark.parametrize(
    "paragraph",
    [
        "Your support makes a difference to families who lost homes, the charity's director said.",
        "Comments made by the minister on Sunday drew criticism from opposition parties, who said "
        "the remarks were unhelpful.",
        "Watch officials said the river could burst its banks overnight.",
        "Photographers gathered outside the court as the verdict was read.",
    ],
)
def test_rules_keep_real_paragraphs(paragraph: str) -> None:
    assert boilerplate_reason(paragraph) is None


def test_sanitised_html(seed: Article) -> None:
    html = seed.html
    assert not re.search(r"<\s*(script|style|iframe)", html, re.IGNORECASE)
    assert not re.search(r"\son\w+\s*=", html, re.IGNORECASE)
    assert "javascript:" not in html.lower()
    sources = re.findall(r'<img[^>]*\ssrc="([^"]+)"', html)
    assert sources == ["https://demo.example/images/soldiers.jpg"]


def test_sanitiser_strips_hostile_markup() -> None:
    page = (
        "<html><body><article><h1>Headline</h1>"
        + "".join(
            f"<p>Paragraph {i} of a long enough story about the harbour, the ferries and the "
            f"people who work there every day of the year.</p>"
            for i in range(6)
        )
        + '<p>Click <a href="javascript:alert(1)" onclick="x()">here</a> or '
        '<a href="/next">next</a> for the rest of the harbour story, said the officials.</p>'
        "</article></body></html>"
    )
    article = extract_article(page, "https://news.example/a/b.html")
    assert article.paragraphs
    assert "javascript:" not in article.html
    assert "onclick" not in article.html
    assert 'href="https://news.example/next"' in article.html


def _nested(depth: int) -> str:
    return "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>"


@pytest.mark.parametrize(
    ("page", "reason"),
    [
        (b"", "empty page"),
        ("   ", "empty page"),
        (b"\x00\xff binary" * 50, "binary content, not HTML"),
        ("not html at all", "not HTML"),
        (None, None),  # truncated seed page: filled in below
        ("<html><body>" + "<p>word " * 1_000_000 + "</body></html>", None),  # ~5 MB
        (
            "<html><head><script>"
            + "var a = 1;" * 500_000
            + "</script></head><body>"
            + "<p>A paragraph of ordinary article text about the weather today.</p>" * 20
            + "</body></html>",
            None,
        ),  # ~5 MB of script around a small article
        (_nested(10_000), None),
    ],
    ids=[
        "empty-bytes",
        "blank",
        "binary",
        "plain-text",
        "truncated",
        "5mb",
        "5mb-script",
        "nested",
    ],
)
def test_bad_input_never_raises(page: str | bytes | None, reason: str | None) -> None:
    if page is None:
        page = SEED_PAGE.read_text("utf-8")[:6000]
    started = time.perf_counter()
    article = extract_article(page, "https://news.example/x")
    assert isinstance(article, Article)
    assert time.perf_counter() - started < 10
    if reason is not None:
        assert article.empty_reason == reason
    if article.empty_reason is not None:
        assert article.paragraphs == () and article.html == ""


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("café".encode(), "café"),
        (b"\xef\xbb\xbfcaf\xc3\xa9", "café"),
        (b'<meta charset="iso-8859-1"><p>caf\xe9</p>', '<meta charset="iso-8859-1"><p>café</p>'),
        (b"<meta charset=nonsense><p>caf\xc3\xa9</p>", "<meta charset=nonsense><p>café</p>"),
        (b"caf\xe9", "caf\ufffd"),
    ],
)
def test_decode_html(content: bytes, expected: str) -> None:
    assert decode_html(content) == expected


_HTMLISH = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "<p>",
                "</p>",
                "<div>",
                "</div>",
                "<h1>",
                "<script>",
                "<html>",
                "<body>",
                "<meta charset='utf-8'>",
                "<img src='x'>",
                "<a href='javascript:x'>",
                "&nbsp;",
                "&#0;",
                "<!--",
                "-->",
                "<![CDATA[",
                "<?xml?>",
                "\x00",
            ]
        ),
        st.text(max_size=40),
    ),
    max_size=30,
).map("".join)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(page=st.one_of(_HTMLISH, st.binary(max_size=200)))
def test_fuzz_never_raises(page: str | bytes) -> None:
    article = extract_article(page, "https://news.example/fuzz")
    assert isinstance(article, Article)
    assert "<script" not in article.html
