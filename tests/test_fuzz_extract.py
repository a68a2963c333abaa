"""Fuzzing page cleaning with mutated real pages: whatever a site serves, `clean_page` returns an
article (possibly empty, with a reason) and never raises, its HTML stays inside the allowlist,
and it takes bounded time, with and without a learned site template.

tests/feeds/test_extract.py already throws random HTML-ish text at the cleaner; this file starts
from the demo site's real article pages (navigation, figures, scripts, JSON-LD, footers), mutates
them byte-wise (slices deleted, duplicated, moved; bytes flipped; markup fragments and odd
characters spliced in) and also declares odd charsets, which is what real breakage looks like.
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feeds.extract import clean_page
from feeds.models import Article
from feeds.templates import SiteTemplate, learn
from tests.conftest import DEMO_SITE
from tests.test_xss_corpus import html_dangers

URL = "https://news.example/world/2026/03/01/story"
SEEDS = [path.read_bytes() for path in sorted((DEMO_SITE / "articles").glob("*.html"))]
SPLICES = st.sampled_from(
    [
        b"<", b">", b"</article>", b"<article>", b"<p>", b"</p>", b"<div>" * 50, b"</div>" * 50,
        b"<script>", b"</script>", b"<style>", b"<!--", b"-->", b"<![CDATA[", b"\x00", b"\xff",
        b"\xc3", b"&", b"&#xD800;", b"&#1114112;", b'<meta charset="utf-16">',
        b'<meta charset="x-unknown">', b'<script type="application/ld+json">{"@type":',
        b'{"@type": "NewsArticle", "author": [[[]]], "datePublished": "99999"}',
        b'<time datetime="0000-00-00">', b'<img src="javascript:alert(1)" alt="' + b"a" * 300,
        b'<base href="javascript:x">', b"<h1></h1>" * 3, b"<table><tr><td>" * 20,
        b"\xef\xbb\xbf", b"\r", "\u2028".encode(),
    ]
)  # fmt: skip


@st.composite
def mutated_page(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            break
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 400)))
        operation = draw(st.sampled_from(["delete", "duplicate", "move", "flip", "splice"]))
        if operation == "delete":
            del data[start:end]
        elif operation == "duplicate":
            data[start:start] = data[start:end]
        elif operation == "move":
            piece = bytes(data[start:end])
            del data[start:end]
            at = draw(st.integers(0, len(data)))
            data[at:at] = piece
        elif operation == "flip":
            data[start] = draw(st.integers(0, 255))
        else:
            data[start:start] = draw(SPLICES)
    return bytes(data)


def template_from_seeds() -> SiteTemplate:
    """A template that has seen every seed page twice: their shared furniture is known."""
    template = SiteTemplate("news.example")
    for page in SEEDS * 2:
        template = learn(template, clean_page(page, URL).fingerprints).template
    return template


TEMPLATE = template_from_seeds()


def check(page: bytes, template: SiteTemplate | None) -> None:
    cleaned = clean_page(page, URL, template)
    article = cleaned.article
    assert isinstance(article, Article)
    if not article.paragraphs:
        assert article.empty_reason, "an empty article says why"
    assert html_dangers(article.html) == []
    assert all(paragraph.strip() for paragraph in article.paragraphs)


@settings(
    max_examples=60, deadline=timedelta(seconds=3), suppress_health_check=[HealthCheck.too_slow]
)
@given(page=mutated_page(), learned=st.booleans())
@example(page=SEEDS[0], learned=True)
@example(page=b"<html>" + b"<div>" * 5000 + b"Kyiv" + b"</div>" * 5000, learned=False)
@example(page=b"<p>" + b"Kyiv talks. " * 20000 + b"</p>", learned=False)
@example(page="<p>Київ \ud800 talks</p>".encode("utf-8", "surrogatepass"), learned=False)
def test_mutated_pages_clean_without_raising(page: bytes, learned: bool) -> None:
    check(page, TEMPLATE if learned else None)
