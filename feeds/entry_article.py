"""Entry → Article from the feed's own text, and the rule for when the page must be fetched.

A feed that carries the full article (content:encoded, atom:content, JSON Feed content_html) spares
a page fetch; one that carries only a teaser does not. The article built here is also the fallback
when a page cannot be fetched, so an article is never lost because its page was down.
"""

from __future__ import annotations

from html import escape
from typing import Literal

from feeds.extract import html_to_article_body
from feeds.models import Article, Entry

FullText = Literal["auto", "always", "never"]

# Below this many characters of text, feed content is taken for a teaser, not the article.
FULL_CONTENT_MIN_CHARS = 600


def needs_page(entry: Entry, full_text: str) -> bool:
    """Whether the article page must be fetched to get the whole text."""
    if full_text == "always":
        return True
    if full_text == "never":
        return False
    paragraphs, _ = html_to_article_body(entry.content_html or "", entry.url)
    return sum(len(p) for p in paragraphs) < FULL_CONTENT_MIN_CHARS


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
    )
