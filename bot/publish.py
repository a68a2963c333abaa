"""Stored matches → Atom documents, written to files and handed to the feed server.

Feeds are rendered when their content may have changed (after a poll that stored matches, and once
at start), never per request. A document is written to disk only when its bytes changed, atomically
(write a temporary file, then rename), so a reader of the file never sees half a feed.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from feeds.atom import EMPTY_FEED_UPDATED, AtomEntry, FeedMeta, render_atom, tag_uri

from .server import ALL_FEED, FeedCatalog, RenderedFeed, feed_url
from .store import FeedItem, Store

__all__ = ["ALL_FEED", "FeedSpec", "Publisher"]
# The date part of tag: URIs of feeds. Fixed, so a feed's id never changes.
FEED_ID_DATE = "2026"


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed to publish: a watchlist's, or `all` (every matched article once)."""

    name: str
    title: str
    subtitle: str
    watchlist: str | None
    """The watchlist whose matches it holds; None for `all`."""


@dataclass(frozen=True, slots=True)
class Publisher:
    store: Store
    catalog: FeedCatalog
    output_dir: Path
    public_url: str
    max_entries: int
    source_titles: dict[str, str]
    """source name → the outlet's display name, for entry authors and atom:source."""

    def publish(self, specs: Sequence[FeedSpec]) -> list[str]:
        """Render every feed; return the names of those whose bytes changed."""
        changed = []
        self.output_dir.mkdir(parents=True, exist_ok=True)
        for spec in specs:
            items = self.store.feed_items(spec.watchlist, self.max_entries)
            body = render_atom(self._meta(spec), [self._entry(item) for item in items])
            current = self.catalog.get(spec.name)
            if current is not None and current.body == body:
                continue
            newest = max((item.article.updated_at for item in items), default=EMPTY_FEED_UPDATED)
            self.catalog.put(RenderedFeed.of(spec.name, spec.title, body, newest))
            write_atomically(self.output_dir / f"{spec.name}.atom", body)
            changed.append(spec.name)
        return changed

    def feed_url(self, name: str) -> str:
        return feed_url(self.public_url, name)

    def _meta(self, spec: FeedSpec) -> FeedMeta:
        return FeedMeta(
            feed_id=tag_uri(self._authority(), FEED_ID_DATE, f"feed/{spec.name}"),
            title=spec.title,
            subtitle=spec.subtitle,
            self_url=self.feed_url(spec.name),
            alternate_url=f"{self.public_url}/",
            author_name="wirewatch",
        )

    def _entry(self, item: FeedItem) -> AtomEntry:
        article = item.article
        outlet = self.source_titles.get(article.source, article.source)
        summary = item.snippet or article.text[:300]
        content = article.html or "".join(
            f"<p>{html.escape(paragraph)}</p>" for paragraph in article.text.split("\n\n")
        )
        return AtomEntry(
            entry_id=tag_uri(
                self._authority(), article.fetched_at.date().isoformat(), f"article/{article.id}"
            ),
            title=article.title,
            link=article.url,
            published=article.published,
            updated=article.updated_at,
            author=article.author,
            source_title=outlet,
            summary=summary,
            content_html=content,
            categories=(*item.watchlists, *item.terms),
        )

    def _authority(self) -> str:
        return urlsplit(self.public_url).hostname or "wirewatch"


def write_atomically(path: Path, body: bytes) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(body)
    os.replace(temporary, path)
