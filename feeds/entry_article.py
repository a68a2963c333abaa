"""Entry → Article from the feed's own text; when the page must be fetched; page and feed merged.

A feed that carries the full article (content:encoded, atom:content, JSON Feed content_html) spares
a page fetch; one that carries only a teaser does not. The article built here is also the fallback
when a page cannot be fetched or cleaned, so an article is never lost because its page was down.
"""

from __future__ import annotations

from html import escape

from feeds.extract import html_to_article_body
from feeds.models import Article, Entry

# Below this many characters of text, feed content is taken for a teaser, not the article.
FULL_CONTENT_MIN_CHARS = 600


def article_from_entry(entry: Entry) -> Article:
    """The article as the feed tells it: full content when present, else the summary."""
    paragraphs, html = html_to_article_body(entry.content_html or "", entry.url)
    if not paragraphs and entry.summary:
        paragraphs = (entry.summary,)
        html = f"<p>{escape(entry.summary, quote=False)}</p>"
    return Article(
        url=entry.url,
        title=entry.title,
        paragraphs=paragraphs,
        html=html,
        author=entry.author,
        published=entry.published,
        updated=entry.updated,
    )


def needs_page(entry: Entry, from_feed: Article, full_text: str) -> bool:
    """Whether the article page must be fetched to get the whole text.

    `full_text` is the source's setting: "always", "never", or "auto" (only when the feed's own
    content, already cleaned into `from_feed`, is missing or too short to be the whole article).
    """
    if not entry.url or full_text == "never":
        return False
    if full_text == "always":
        return True
    return entry.content_html is None or len(from_feed.text) < FULL_CONTENT_MIN_CHARS


def merge_page_and_feed(from_page: Article, from_feed: Article) -> Article:
    """The page's article, with the feed's values where the page gave none; the feed's article
    when the page gave no text at all."""
    if not from_page.paragraphs:
        return from_feed
    return Article(
        url=from_page.url or from_feed.url,
        title=from_page.title or from_feed.title,
        paragraphs=from_page.paragraphs,
        html=from_page.html,
        author=from_page.author or from_feed.author,
        published=from_page.published or from_feed.published,
        standfirst=from_page.standfirst or from_feed.standfirst,
        language=from_page.language or from_feed.language,
        updated=from_page.updated or from_feed.updated,
        image=from_page.image or from_feed.image,
    )
