"""(feed meta, [entry]) → Atom 1.0 bytes (RFC 4287), deterministic.

The same inputs always give the same bytes, so the feed server's ETag only changes when the content
does and feed readers are not made to re-download (or re-notify) an unchanged feed. feedgen builds
the document; what it gets wrong for that purpose is corrected here, in one place:

- It stamps feed and entry ``updated`` with ``now()`` unless told: the feed's ``updated`` is the
  newest entry's ``updated``, or :data:`EMPTY_FEED_UPDATED` (the Unix epoch) for an empty feed.
- It writes ``<generator version="…">`` with its own version: ours is a bare "wirewatch", so a
  library upgrade does not change the bytes.
- It prepends entries by default: entries are appended, so they come out in the order given (the
  caller gives them newest first).
- feedgen 1.0 drops every attribute but ``href`` from entry links (a shadowed variable in
  ``FeedEntry.atom_entry``): ``rel="alternate"`` and ``type="text/html"`` are put back.
- It can only write ``<source>`` with both a URL and a title, and we may know only the outlet's
  name: ``<source><title>outlet</title></source>`` (plus the outlet's feed as ``rel="self"`` when
  known) is added here.
- Its link() accepts only the rel values of RFC 4287 itself: the WebSub ``hub`` and the RFC 5005
  paging links (``current``, ``prev-archive``, ``next-archive``) and the ``fh:archive`` marker are
  added here, as are the entries' ``rel="related"`` links to other outlets' reports.

The W3C Feed Validation Service warns about a text construct that looks like HTML
(ContainsUndeclaredHTML): a title or plain-text summary such as "The <b> tag explained" is
therefore written as ``type="html"`` with the text escaped, which every reader shows as the same
literal text.

Strings are stripped of characters XML 1.0 cannot carry (NUL, vertical tab, lone surrogates...),
so hostile feed text cannot make the document unserialisable or invalid. Datetimes must be
timezone-aware; they are written in UTC, to the second, as RFC 3339.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Literal
from urllib.parse import quote

from feedgen.feed import FeedGenerator
from lxml import etree

__all__ = [
    "EMPTY_FEED_UPDATED",
    "GENERATOR",
    "AtomEntry",
    "FeedMeta",
    "Paging",
    "RelatedLink",
    "render_atom",
    "tag_uri",
]

ATOM_NS = "http://www.w3.org/2005/Atom"
HISTORY_NS = "http://purl.org/syndication/history/1.0"
"""RFC 5005 Feed History: ``<fh:archive/>`` marks an archive document."""
GENERATOR = "wirewatch"
"""The ``<generator>`` text: no version, so upgrades do not change the bytes of unchanged feeds."""
EMPTY_FEED_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)
"""``updated`` of a feed without entries: fixed, so an empty feed's bytes never change, and older
than any real entry, so the first entry always moves it forward."""

_XML_ILLEGAL = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TAG_DATE = re.compile(r"\d{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12]\d|3[01]))?)?")
_TAG_AUTHORITY_ILLEGAL = re.compile(r"[^a-z0-9.@-]+")
# RFC 4151 `specific`: pchar / "/" / "?"; pchar = unreserved / pct-encoded / sub-delims / ":" / "@".
# quote() always keeps ALPHA, DIGIT and "_.-~"; everything else not listed here is percent-encoded.
_TAG_SPECIFIC_SAFE = "!$&'()*+,;=:@/?"
# What the W3C validator takes for markup in a text construct: a tag or an entity reference.
_LOOKS_LIKE_HTML = re.compile(r"<[A-Za-z/!?]|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")

_TEXT_CONSTRUCTS = ("title", "subtitle", "summary", "rights")

RelatedLink = tuple[str, str]
"""(outlet name, URL) of another outlet's report of the same story."""


@dataclass(frozen=True, slots=True)
class Paging:
    """Where one document sits in its feed's RFC 5005 history.

    The subscription document (the one readers subscribe to) has ``prev_archive_url`` once older
    entries exist. An archive document has ``archive=True``, ``current_url`` (the subscription
    document) and links to its neighbours; its entries do not change once written, except when an
    article itself is updated.
    """

    archive: bool = False
    current_url: str | None = None
    prev_archive_url: str | None = None
    next_archive_url: str | None = None


@dataclass(frozen=True, slots=True)
class FeedMeta:
    """What describes a whole feed (one per watchlist, plus "all")."""

    feed_id: str
    """Permanent IRI of the feed (see :func:`tag_uri`): never change it, readers key on it."""
    title: str
    subtitle: str
    self_url: str
    """Where the feed itself is served (``rel="self"``)."""
    alternate_url: str
    """An HTML page for people (``rel="alternate"``), e.g. the server's index page."""
    author_name: str
    icon_url: str | None = None
    hub_url: str | None = None
    """A WebSub hub that readers may subscribe at (``rel="hub"``); the caller pings it."""
    paging: Paging = Paging()


@dataclass(frozen=True, slots=True)
class AtomEntry:
    """One article as it appears in a feed."""

    entry_id: str
    """Permanent IRI of the entry (see :func:`tag_uri`)."""
    title: str
    link: str
    """The article page (``rel="alternate"``)."""
    published: datetime | None
    updated: datetime
    author: str | None
    """The byline; when missing, the outlet's name stands in, so every entry has an author."""
    source_title: str
    """The outlet's name, written as ``<source><title>``."""
    summary: str
    """Plain text."""
    content_html: str
    """HTML, written escaped with ``type="html"`` (already sanitised upstream)."""
    categories: tuple[str, ...]
    summary_type: Literal["text", "html"] = "text"
    """``html`` when ``summary`` is markup (the snippet with the matched terms in bold)."""
    related: tuple[RelatedLink, ...] = ()
    """Other outlets that reported the same story, written as ``rel="related"`` links titled with
    the outlet's name. Empty until near-duplicate detection provides them."""
    source_url: str | None = None
    """The outlet's own feed, written as ``<source><link rel="self">`` when known."""


def render_atom(meta: FeedMeta, entries: Sequence[AtomEntry]) -> bytes:
    """Render a UTF-8 Atom document; ``entries`` appear in the order given (newest first).

    Raises ValueError for a naive datetime, or for an empty feed/entry id or feed title (RFC 4287
    requires them, and inventing one would break readers' de-duplication).
    """
    if not _clean(meta.feed_id) or not _clean(meta.title):
        raise ValueError("a feed needs an id and a title")
    generator = FeedGenerator()
    generator.id(_clean(meta.feed_id))
    generator.title(_clean(meta.title))
    if _clean(meta.subtitle):
        generator.subtitle(_clean(meta.subtitle))
    generator.updated(_feed_updated(entries))
    generator.author(name=_clean(meta.author_name) or _clean(meta.title))
    generator.link(href=_clean(meta.self_url), rel="self", type="application/atom+xml")
    generator.link(href=_clean(meta.alternate_url), rel="alternate", type="text/html")
    if meta.icon_url:
        generator.icon(_clean(meta.icon_url))
    generator.generator(GENERATOR)
    fallback_author = _clean(meta.author_name) or _clean(meta.title)
    for entry in entries:
        _add_entry(generator, entry, fallback_author)
    raw: bytes = generator.atom_str(pretty=False, xml_declaration=False)
    return _finish(raw, meta, entries)


def tag_uri(authority: str, date: str, specific: str) -> str:
    """Build an RFC 4151 ``tag:`` URI: a permanent id that needs no resolvable URL.

    ``authority`` is a DNS name or e-mail address the minter controlled on ``date`` (``YYYY``,
    ``YYYY-MM`` or ``YYYY-MM-DD``). RFC 4151 allows only letters, digits, "." and "-" in a DNS
    name, so other characters (a port's ":", spaces...) become "-" and case is folded:
    ``tag_uri("127.0.0.1:8080", "2026", "article/42")`` is ``tag:127.0.0.1-8080,2026:article/42``.
    Characters ``specific`` may not hold are percent-encoded (UTF-8), so any text is accepted.
    Raises ValueError for a malformed date or an authority with nothing usable in it.
    """
    if not _TAG_DATE.fullmatch(date):
        raise ValueError(f"tag URI date must be YYYY, YYYY-MM or YYYY-MM-DD, not {date!r}")
    name = _TAG_AUTHORITY_ILLEGAL.sub("-", authority.strip().lower()).strip(".-")
    if not name or name.startswith("@") or name.endswith("@"):
        raise ValueError(f"tag URI authority has no usable name: {authority!r}")
    return f"tag:{name},{date}:{quote(specific, safe=_TAG_SPECIFIC_SAFE)}"


def _add_entry(generator: FeedGenerator, entry: AtomEntry, fallback_author: str) -> None:
    entry_id = _clean(entry.entry_id)
    if not entry_id:
        raise ValueError("every entry needs an id")
    item = generator.add_entry(order="append")
    item.id(entry_id)
    link = _web_url(entry.link)
    # feedgen refuses an empty title; RFC 4287 allows one but readers show nothing useful.
    item.title(_clean(entry.title) or link or entry_id)
    item.updated(_utc(entry.updated))
    if entry.published is not None:
        item.published(_utc(entry.published))
    item.author(name=_clean(entry.author or "") or _clean(entry.source_title) or fallback_author)
    if link:
        item.link(href=link, rel="alternate", type="text/html")
    if _clean(entry.summary):
        item.summary(_clean(entry.summary), type=entry.summary_type)
    if _clean(entry.content_html) or not link:
        # RFC 4287 4.1.1: an entry without an alternate link must have content.
        item.content(_clean(entry.content_html), type="html")
    terms = dict.fromkeys(term for term in map(_clean, entry.categories) if term)
    for term in terms:
        item.category(term=term)


def _finish(raw: bytes, meta: FeedMeta, entries: Sequence[AtomEntry]) -> bytes:
    """Re-serialise feedgen's output after putting back what it drops (see module docstring)."""
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    _add_feed_links(root, meta)
    nodes = root.iterfind(f"{{{ATOM_NS}}}entry")
    for node, entry in zip(nodes, entries, strict=True):
        for link in node.iterfind(f"{{{ATOM_NS}}}link"):
            if link.get("rel") is None:
                link.set("rel", "alternate")
                link.set("type", "text/html")
        for outlet, url in dict.fromkeys(
            (_clean(outlet), _clean(url)) for outlet, url in entry.related
        ):
            if _web_url(url) and url != _clean(entry.link):
                attributes = {"rel": "related", "type": "text/html", "href": url}
                if outlet:
                    attributes["title"] = outlet
                etree.SubElement(node, f"{{{ATOM_NS}}}link", attributes)
        source_title = _clean(entry.source_title)
        source_url = _clean(entry.source_url or "")
        if source_title or source_url:
            source = etree.SubElement(node, f"{{{ATOM_NS}}}source")
            if source_url:
                etree.SubElement(source, f"{{{ATOM_NS}}}link", {"rel": "self", "href": source_url})
            if source_title:
                etree.SubElement(source, f"{{{ATOM_NS}}}title").text = source_title
    for construct in root.iter(*(f"{{{ATOM_NS}}}{name}" for name in _TEXT_CONSTRUCTS)):
        text = construct.text or ""
        if construct.get("type", "text") == "text" and _LOOKS_LIKE_HTML.search(text):
            construct.set("type", "html")
            construct.text = escape(text, quote=False)
    if meta.paging.archive:
        # Before the first entry, with the feed's other metadata.
        marker = etree.Element(f"{{{HISTORY_NS}}}archive")
        first_entry = root.find(f"{{{ATOM_NS}}}entry")
        if first_entry is None:
            root.append(marker)
        else:
            first_entry.addprevious(marker)
        etree.cleanup_namespaces(root, top_nsmap={"fh": HISTORY_NS})
    return etree.tostring(root, encoding="UTF-8", xml_declaration=True, pretty_print=True)


def _add_feed_links(root: etree._Element, meta: FeedMeta) -> None:
    """The links feedgen cannot write, placed after its own feed-level links."""
    wanted = [
        ("hub", meta.hub_url, None),
        ("current", meta.paging.current_url, "application/atom+xml"),
        ("prev-archive", meta.paging.prev_archive_url, "application/atom+xml"),
        ("next-archive", meta.paging.next_archive_url, "application/atom+xml"),
    ]
    existing = root.findall(f"{{{ATOM_NS}}}link")
    anchor = existing[-1] if existing else None
    for rel, href, media_type in wanted:
        if not href or not _clean(href):
            continue
        attributes = {"rel": rel, "href": _clean(href)}
        if media_type:
            attributes["type"] = media_type
        link = etree.Element(f"{{{ATOM_NS}}}link", attributes)
        if anchor is None:
            root.insert(0, link)
        else:
            anchor.addnext(link)
        anchor = link


def _feed_updated(entries: Sequence[AtomEntry]) -> datetime:
    return max((_utc(entry.updated) for entry in entries), default=EMPTY_FEED_UPDATED)


def _utc(moment: datetime) -> datetime:
    """UTC to the second: one spelling per instant, so equal times give equal bytes."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime without a timezone: {moment.isoformat()}")
    return moment.astimezone(UTC).replace(microsecond=0)


def _web_url(url: str) -> str:
    """The URL if a reader may open it (http or https), else "": feeds.parse already drops other
    links, this keeps articles stored before it did (javascript:, data:) out of the feeds."""
    url = _clean(url)
    return url if url.lower().startswith(("http://", "https://")) else ""


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot carry; lxml would refuse the whole document otherwise."""
    return _XML_ILLEGAL.sub("", text).strip()
