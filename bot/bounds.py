"""Resource bounds on what one poll may bring in, so that a flood of news cannot grow memory, the
database or a poll's duration without limit.

- **Entries per poll** (``fetch.max_entries_per_poll``): a feed listing thousands of items is read
  whole (``fetch.max_bytes`` bounds that), but only the newest N entries are taken; the rest are
  left, not remembered: if the feed still lists them when the newer ones have moved on, a later
  poll takes them (newest first again).
- **Article length** (``fetch.max_article_chars``): the stored text is cut at a paragraph boundary
  and ends with a marker paragraph saying how long the original was; a first paragraph longer than
  the bound is cut at a word. The HTML of a cut article is rebuilt from the kept paragraphs (a cut
  inside sanitised HTML could leave an open tag).

The outbox bound (``telegram.max_pending_per_chat``) lives with delivery, in bot.outbox_bound.
Pure functions, tested with tables and floods in tests/bot/test_bounds.py.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from datetime import datetime

from feeds.models import Article, Entry

HTML_ALLOWANCE = 3
"""Markup may make the HTML this many times longer than the text before the article is cut."""


def newest_entries(entries: Sequence[Entry], limit: int) -> list[Entry]:
    """At most `limit` entries, the newest by their date (published, else updated); undated
    entries count as older than dated ones and keep their feed order. The result keeps the
    feed's order, which ingestion relies on (it stores oldest first by walking it backwards)."""
    if len(entries) <= limit:
        return list(entries)

    def age(indexed: tuple[int, Entry]) -> tuple[bool, float, int]:
        index, entry = indexed
        moment: datetime | None = entry.published or entry.updated
        return (moment is None, -moment.timestamp() if moment else 0.0, index)

    keep = {index for index, _ in sorted(enumerate(entries), key=age)[:limit]}
    return [entry for index, entry in enumerate(entries) if index in keep]


def truncation_marker(original_length: int) -> str:
    return f"[…] (shortened by wirewatch: the article had {original_length:,} characters)"


def bounded_article(article: Article, max_chars: int) -> Article:
    """The article, or a copy cut to about `max_chars` characters of text (the marker adds a
    few dozen more) at a paragraph boundary."""
    text_length = len(article.text)
    if text_length <= max_chars and len(article.html) <= HTML_ALLOWANCE * max_chars:
        return article
    kept: list[str] = []
    used = 0
    for paragraph in article.paragraphs:
        cost = len(paragraph) + (2 if kept else 0)
        if used + cost > max_chars:
            if not kept:  # one paragraph longer than the bound: cut it at a word
                cut = paragraph[:max_chars]
                kept.append(cut.rsplit(None, 1)[0] if " " in cut else cut)
            break
        kept.append(paragraph)
        used += cost
    kept.append(truncation_marker(text_length))
    body = "".join(f"<p>{html.escape(paragraph, quote=False)}</p>" for paragraph in kept)
    return dataclasses.replace(article, paragraphs=tuple(kept), html=body)
