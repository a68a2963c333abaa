"""Stored articles → Atom documents, written to files and handed to the feed server.

Three kinds of feed: one per watchlist, ``all`` (every matched article once), and one per source
with the full cleaned text of every article it brought (matched or not). Each is a subscription
document with the newest ``max_entries`` entries plus RFC 5005 archive pages holding everything
older, so a reader that was offline for a week follows ``prev-archive`` links and misses nothing.

Paging is by position in the order entries entered the feed (oldest first): page 1 holds entries
1..N, page 2 entries N+1..2N, and so on. A page is published only once it is full and the
subscription document no longer shows all of it, so a page never changes size and never loses an
entry to the next page; only an update of one of its articles, or the appearance of the next page
(its ``next-archive`` link), re-renders it. The subscription document may repeat some entries of
the newest archive page; readers recognise them by id, which RFC 5005 allows.

Feeds are rendered when their content may have changed (after a poll that stored something, and
once at start), never per request. Each publish reads the feeds' histories without article bodies;
a document whose items and links are the same as last time is not read further nor rendered again
(archive pages, nearly always); one whose bytes changed is put in the catalog and written to disk,
atomically (write a temporary file, then rename), so a reader of the file never sees half a feed.
"""

from __future__ import annotations

import dataclasses
import html
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from feeds.atom import EMPTY_FEED_UPDATED, AtomEntry, FeedMeta, Paging, render_atom, tag_uri
from feeds.text import highlight_html

from .retention import archive_start
from .server import (
    ALL_FEED,
    ICON_PATH,
    FeedCatalog,
    RenderedFeed,
    archive_path,
    feed_path,
    source_path,
)
from .store import FeedItem, Store

__all__ = [
    "ALL_FEED",
    "FeedSpec",
    "Publisher",
    "highlight_html",
    "source_feed_spec",
    "write_atomically",
]
# The date part of tag: URIs of feeds. Fixed, so a feed's id never changes.
FEED_ID_DATE = "2026"
SUMMARY_FALLBACK_CHARACTERS = 300
"""A summary without a match snippet (full-text source feeds) is the start of the text."""
MAX_RELATED_LINKS = 20
"""Other outlets' reports linked from one entry (earliest first): a story every outlet carried
must not turn each of its entries into a page of links."""


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One feed to publish: a watchlist's, `all` (every matched article once), or a source's."""

    name: str
    title: str
    subtitle: str
    watchlist: str | None
    """The watchlist whose matches it holds; None for `all` and for a source's feed."""
    source: str | None = None
    """Set for a source's full-text feed: every article of that source, matched or not."""

    @property
    def path(self) -> str:
        return source_path(self.name) if self.source is not None else feed_path(self.name)


def source_feed_spec(name: str, title: str) -> FeedSpec:
    """The full-text feed of a source: every article it brought, cleaned, matched or not."""
    return FeedSpec(
        name, f"{title} (full text)", f"Every article of {title}, cleaned", None, source=name
    )


@dataclass(frozen=True, slots=True)
class _Document:
    """One document to publish, described by its items without their text: comparing this with
    what a path was last rendered from tells whether it changed (any edit of an article moves
    its ``updated_at``), without reading or rendering any article body."""

    path: str
    meta: FeedMeta
    items: tuple[FeedItem, ...]
    """Oldest first; articles without text and html."""
    last_modified: datetime
    listed: bool


@dataclass(frozen=True, slots=True)
class Publisher:
    store: Store
    catalog: FeedCatalog
    output_dir: Path
    public_url: str
    max_entries: int
    source_titles: dict[str, str]
    """source name → the outlet's display name, for entry authors and atom:source."""
    hub_url: str | None = None
    """A WebSub hub advertised in every document (the application pings it on changes)."""
    source_feed_urls: Mapping[str, str] = field(default_factory=dict)
    """source name → the outlet's own feed, written as the entries' ``<source>`` self link."""
    _rendered: dict[str, _Document] = field(default_factory=dict, compare=False, repr=False)
    """path → what it was last rendered from, so an unchanged document is not rendered again."""
    _lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    """Scheduled polls may publish from two worker threads at once: one publish at a time."""
    _starts: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """path → the retention start its pruned pages were last removed for (`_drop_pruned_pages`)."""

    def publish(self, specs: Sequence[FeedSpec]) -> list[str]:
        """Render every feed and its archive pages; return the paths of the subscription
        documents whose bytes changed (what a WebSub hub must be told about)."""
        changed = []
        with self._lock:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            for spec in specs:
                start, history = self._history(spec)
                self._drop_pruned_pages(spec, start)
                for document in self._documents(spec, history, start):
                    if self._publish_document(spec, document) and document.listed:
                        changed.append(document.path)
        return changed

    def url_of(self, path: str) -> str:
        return f"{self.public_url}/{path}"

    def _history(self, spec: FeedSpec) -> tuple[int, list[FeedItem]]:
        """How many entries retention removed from the feed's front (bot.retention), and the
        feed's items, oldest first, without article bodies (see `_Document`). Read again if a
        prune came in between: the count and the history must be of the same moment."""
        while True:
            start = archive_start_of(self.store, spec.path)
            if spec.source is not None:
                history = self.store.source_history(spec.source, content=False)
            else:
                history = self.store.feed_history(spec.watchlist, content=False)
            if archive_start_of(self.store, spec.path) == start:
                return start, history

    def _drop_pruned_pages(self, spec: FeedSpec, start: int) -> None:
        """Stop serving, and delete the files of, archive pages whose every entry was pruned."""
        if self._starts.get(spec.path) == start:
            return
        self._starts[spec.path] = start
        gone = start // self.max_entries  # pages 1..gone held only pruned entries
        directory = self.output_dir / archive_path(spec.path, 1).removeprefix("feeds/")
        for file in directory.parent.glob("*.atom") if gone else ():
            if file.stem.isdigit() and int(file.stem) <= gone:
                file.unlink(missing_ok=True)
        for page in range(1, gone + 1):
            self.catalog.remove(archive_path(spec.path, page))
            self._rendered.pop(archive_path(spec.path, page), None)

    def _documents(
        self, spec: FeedSpec, history: Sequence[FeedItem], start: int = 0
    ) -> list[_Document]:
        """The subscription document and every archive page still holding an entry, from the
        oldest-first history whose first `start` entries were pruned: page p holds entries
        (p-1)·N+1 .. p·N counted from the first entry the feed ever had."""
        size = self.max_entries
        archive_pages = max(0, -(-(start + len(history)) // size) - 1)
        first_page = start // size + 1
        subscription_url = self.url_of(spec.path)
        documents = [
            self._document(
                spec,
                spec.path,
                history[-size:],
                Paging(
                    prev_archive_url=self.url_of(archive_path(spec.path, archive_pages))
                    if archive_pages >= first_page
                    else None
                ),
                listed=True,
            )
        ]
        for page in range(first_page, archive_pages + 1):
            paging = Paging(
                archive=True,
                current_url=subscription_url,
                prev_archive_url=self.url_of(archive_path(spec.path, page - 1))
                if page > first_page
                else None,
                next_archive_url=self.url_of(archive_path(spec.path, page + 1))
                if page < archive_pages
                else None,
            )
            items = history[max(0, (page - 1) * size - start) : page * size - start]
            documents.append(
                self._document(spec, archive_path(spec.path, page), items, paging, listed=False)
            )
        return documents

    def _document(
        self,
        spec: FeedSpec,
        path: str,
        items: Sequence[FeedItem],
        paging: Paging,
        *,
        listed: bool,
    ) -> _Document:
        meta = FeedMeta(
            feed_id=tag_uri(self._authority(), FEED_ID_DATE, self._feed_id_path(spec)),
            title=spec.title,
            subtitle=spec.subtitle,
            self_url=self.url_of(path),
            alternate_url=f"{self.public_url}/",
            author_name="wirewatch",
            icon_url=self.url_of(ICON_PATH),
            hub_url=self.hub_url,
            paging=paging,
        )
        last_modified = max((item.article.updated_at for item in items), default=EMPTY_FEED_UPDATED)
        return _Document(path, meta, tuple(items), last_modified, listed)

    def _publish_document(self, spec: FeedSpec, document: _Document) -> bool:
        """Render, store and write one document; whether its bytes changed."""
        if self._rendered.get(document.path) == document:
            return False
        full = self.store.articles_by_id([item.article.id for item in document.items])
        entries = [
            self._entry(dataclasses.replace(item, article=full.get(item.article.id, item.article)))
            for item in reversed(document.items)
        ]
        body = render_atom(document.meta, entries)
        self._rendered[document.path] = document
        current = self.catalog.get(document.path)
        if current is not None and current.body == body:
            return False
        self.catalog.put(
            RenderedFeed.of(
                document.path, spec.title, body, document.last_modified, listed=document.listed
            )
        )
        target = self.output_dir / document.path.removeprefix("feeds/")
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, body)
        return True

    def _feed_id_path(self, spec: FeedSpec) -> str:
        # Kept as it was before source feeds existed, so watchlist feed ids never change.
        return f"source/{spec.name}" if spec.source is not None else f"feed/{spec.name}"

    def _entry(self, item: FeedItem) -> AtomEntry:
        article = item.article
        outlet = self.source_titles.get(article.source, article.source)
        if item.snippet:
            summary = highlight_html(item.snippet, item.terms)
        else:
            summary = html.escape(_clip(article.text, SUMMARY_FALLBACK_CHARACTERS), quote=False)
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
            summary_type="html",
            content_html=content,
            categories=(*item.watchlists, *item.terms),
            related=tuple(
                (self.source_titles.get(outlet, outlet), url)
                for outlet, url in item.related[:MAX_RELATED_LINKS]
            ),
            source_url=self.source_feed_urls.get(article.source),
        )

    def _authority(self) -> str:
        return urlsplit(self.public_url).hostname or "wirewatch"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(None, 1)[0] if " " in text[:limit] else text[:limit]
    return f"{cut.rstrip()}…"


def write_atomically(path: Path, body: bytes) -> None:
    # One temporary name per process: workers of a fleet on one machine share the output folder,
    # and one's rename must never publish (or lose) another's half-written file.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(body)
    os.replace(temporary, path)


def archive_start_of(store: Store, path: str) -> int:
    """Entries pruned from the front of the feed at `path` (bot.retention)."""
    with store.engine.connect() as connection:
        return archive_start(connection, path)
