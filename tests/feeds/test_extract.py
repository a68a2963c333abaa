"""feeds.extract: the seed page end to end, sanitised HTML, bad input, and a fuzz test."""

from __future__ import annotations

import json
import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feeds.boilerplate import boilerplate_reason, judge_blocks
from feeds.extract import decode_html, extract_article, html_to_article_body
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


_BODY = "<p>Officials said the harbour would reopen on Monday after a week of repairs.</p>" * 3


def _crashed(article: Article) -> bool:
    """Whether extract_article hid an exception (its catch-all turns one into this reason)."""
    return (article.empty_reason or "").startswith("could not be parsed")


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
    assert not _crashed(article), article.empty_reason
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
                "<div class='chunk'>",
                "<br>",
                "<br><br>",
                "<span>",
                "<em>",
                "<blockquote>",
                "</blockquote>",
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
                "\x1f",
                "\x0b",
                "\ufffe",
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
    assert not _crashed(article), article.empty_reason
    assert "<script" not in article.html


class _Warnings(logging.Handler):
    """Collects what feeds.extract logs: its catch-alls log every exception they swallow."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fragment=_HTMLISH)
def test_fuzz_feed_content_never_crashes(fragment: str) -> None:
    handler = _Warnings()
    logger = logging.getLogger("feeds.extract")
    logger.addHandler(handler)
    try:
        paragraphs, html = html_to_article_body(fragment, "https://news.example/fuzz")
    finally:
        logger.removeHandler(handler)
    assert handler.messages == []
    assert "<script" not in html
    assert bool(paragraphs) == bool(html)


_HELLO = "Hello world, said the harbour master."


@pytest.mark.parametrize(
    ("fragment", "paragraphs"),
    [
        ("<html>", ()),
        ("<html><head><title>Only a head</title></head></html>", ()),
        (
            "<!DOCTYPE html><html><body><p>A whole document.</p></body></html>",
            ("A whole document.",),
        ),
        ("<!-- only a comment -->", ()),
        # Comments and processing instructions are no text (and once made the body unreadable).
        ("<p>Hello <!-- an ad --> world, said the harbour master.</p>", (_HELLO,)),
        ("<p>Hello <?php echo 1 ?> world, said the harbour master.</p>", (_HELLO,)),
        ("Plain text sent as HTML.", ("Plain text sent as HTML.",)),
    ],
)
def test_feed_content_of_odd_shapes(fragment: str, paragraphs: tuple[str, ...]) -> None:
    handler = _Warnings()
    logger = logging.getLogger("feeds.extract")
    logger.addHandler(handler)
    try:
        assert html_to_article_body(fragment, "https://news.example/")[0] == paragraphs
    finally:
        logger.removeHandler(handler)
    assert handler.messages == []  # nothing was swallowed by the catch-all


_CONTROL = "\x01\x08\x0b\x0c\x1f\ufffe\uffff"
_CONTROL_TEXT = "Officials said the harbour would reopen on Monday after a week of repairs."


@pytest.mark.parametrize("control", list(_CONTROL), ids=[f"U+{ord(c):04X}" for c in _CONTROL])
def test_control_characters_are_dropped_not_fatal(control: str) -> None:
    """lxml keeps these in the tree but refuses any text containing one that is assigned to it."""
    glued = _CONTROL_TEXT.replace("harbour", f"harbour{control}")
    page = f"<html><body><article><p>{glued}</p>{_BODY}</article></body></html>"
    article = extract_article(page, "https://news.example/control")
    assert article.empty_reason is None
    assert article.paragraphs[0] == _CONTROL_TEXT
    paragraphs, _ = html_to_article_body(f"<p>{glued}</p><p>{glued}</p>", "https://news.example/")
    assert paragraphs == (_CONTROL_TEXT, _CONTROL_TEXT)


def _dated_page(head: str, body: str = "") -> str:
    return f"<html><head>{head}</head><body><article>{body}{_BODY}</article></body></html>"


def _meta_time(value: str) -> str:
    return f'<meta property="article:published_time" content="{value}">'


def _ld_date(value: str) -> str:
    item = {"@type": "NewsArticle", "datePublished": value}
    return f'<script type="application/ld+json">{json.dumps(item)}</script>'


@pytest.mark.parametrize(
    ("head", "body", "published"),
    [
        (_meta_time("2024-05-06T10:00:00+02:00"), "", datetime(2024, 5, 6, 8, 0, tzinfo=UTC)),
        (_ld_date("2024-05-06T03:00:00-05:00"), "", datetime(2024, 5, 6, 8, 0, tzinfo=UTC)),
        (
            "",
            '<time datetime="2024-05-06T08:00:00Z">6 May</time>',
            datetime(2024, 5, 6, 8, 0, tzinfo=UTC),
        ),
        (_meta_time("2024-05-06T08:00:00"), "", datetime(2024, 5, 6, 8, 0, tzinfo=UTC)),  # naive
        # No UTC equivalent (OverflowError): unusable, so the next candidate is taken.
        (
            _meta_time("0001-01-01T00:00:00+01:00"),
            '<time datetime="2024-05-06T10:00:00+02:00">6 May</time>',
            datetime(2024, 5, 6, 8, 0, tzinfo=UTC),
        ),
        (_meta_time("0001-01-01T00:00:00+01:00"), "", None),
        (_ld_date("9999-12-31T23:59:59-01:00"), "", None),
        (_meta_time("yesterday"), "", None),
        ("", "", None),
    ],
    ids=[
        "meta-offset",
        "json-ld-offset",
        "time-z",
        "naive",
        "overflow-then-valid",
        "overflow-before-min",
        "overflow-after-max",
        "garbage",
        "none",
    ],
)
def test_published_is_aware_utc_or_missing(
    head: str, body: str, published: datetime | None
) -> None:
    article = extract_article(_dated_page(head, body), "https://news.example/dated")
    assert not _crashed(article), article.empty_reason
    assert article.published == published
    if published is not None:
        assert article.published is not None and article.published.tzinfo is UTC
