"""FetchResult → [Entry]: every feed format through one adapter into one canonical Entry.

Formats: RSS 0.9x, RSS 1.0 (RDF), RSS 2.0, Atom 0.3 and 1.0 through feedparser (it copes with the
encodings, namespaces and broken markup found in the wild); JSON Feed 1.0 and 1.1 by hand, because
feedparser does not read it. Everything after this module sees only `Entry`:

- `guid` is the feed's own id, else the link, else a hash of title and date (stable across polls);
- `url` is absolute (resolved against the final URL of the fetch);
- `title`, `summary` and `author` are display text cleaned by `feeds.text` like every other text:
  tags and entities gone, invisible characters (soft hyphens, zero-width spaces) removed,
  whitespace collapsed, so that "Uk&shy;raine" in a feed matches "Ukraine";
- `published` / `updated` are timezone-aware UTC datetimes.

Entries come out in feed order. Entries with neither link nor title say nothing and are skipped.
A broken feed that still yielded entries is salvaged; one that yielded nothing is a ParseError.
"""

from __future__ import annotations

import calendar
import hashlib
import html
import io
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from lxml import etree

from feeds.cadence import FeedHints
from feeds.errors import ParseError
from feeds.models import Entry, FetchResult
from feeds.text import clean_text, html_to_text

__all__ = ["parse_feed", "parse_feed_salvaged", "parse_hints"]

_CHARSET_NOTES = (
    feedparser.CharacterEncodingOverride,
    feedparser.NonXMLContentType,
)
_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_JSON_FEED_VERSION = re.compile(r"^https?://jsonfeed\.org/version/\d+(\.\d+)?/?$")
_JSON_TYPES = ("application/feed+json", "application/json")
_ENTITY_DECLARATION = re.compile(rb"""<!ENTITY\b(?:"[^"]*"|'[^']*'|[^>"'])*>""", re.IGNORECASE)
_PLAIN_ENTITY = re.compile(
    rb"""<!ENTITY\s+[\w.:-]+\s+(?:"(?:&\#\w+;|[^&"])*"|'(?:&\#\w+;|[^&'])*')\s*>"""
)
"""A declaration whose value is plain text and character references: it cannot amplify."""
_CHARACTER_REFERENCE = re.compile(rb"&#(?:[xX](?P<hex>[0-9a-fA-F]+)|(?P<decimal>[0-9]+));")
_ENCODING_DECLARATION = re.compile(
    rb"""(?:\xef\xbb\xbf)?<\?xml[^>]*?(?P<attribute>\sencoding\s*=\s*(?P<q>["'])(?P<name>[^"'>]*)(?P=q))"""
)
_ENCODING_NAME = re.compile(rb"[A-Za-z][A-Za-z0-9._-]*")
# A blank line (possibly holding spaces) separates the paragraphs of a JSON Feed content_text.
_BLANK_LINE = re.compile(r"\n\s*\n")


def parse_feed(result: FetchResult, source: str) -> list[Entry]:
    """The entries of a fetched feed, in feed order. Raises ParseError when it is no feed at all."""
    return parse_feed_salvaged(result, source)[0]


def parse_feed_salvaged(result: FetchResult, source: str) -> tuple[list[Entry], str | None]:
    """Like `parse_feed`, and also what was wrong with a feed that had to be salvaged (broken
    XML that feedparser's lenient parser still read), for the poll to record; None when clean."""
    if _is_json(result):
        return _parse_json_feed(result, source), None
    return _parse_with_feedparser(result, source)


# -- sniffing -------------------------------------------------------------------------------------


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _is_json(result: FetchResult) -> bool:
    """The body's first character decides when it is telling (`{` is never XML, `<` never JSON);
    the declared type only otherwise, because servers mislabel feeds more often than not."""
    head = result.content.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head in (b"{", b"<"):
        return head == b"{"
    return _media_type(result.content_type) in _JSON_TYPES


# -- RSS / RDF / Atom -----------------------------------------------------------------------------


def _parse_with_feedparser(result: FetchResult, source: str) -> tuple[list[Entry], str | None]:
    # Handing feedparser the headers lets it pick the charset the way RFC 3023 says, and
    # content-location makes relative links resolve against where we actually ended up.
    headers = {"content-location": result.url, "content-type": _xml_content_type(result)}
    # A stream, never bytes or str: feedparser treats those as a filename or URL to open.
    content = _repair_for_feedparser(_defuse_entities(result.content))
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers)
    # No version means feedparser found no feed root element (an HTML page, an error page,
    # garbage); its loose parser may still have scraped a "feed" dict out of it: that is no feed.
    if not parsed.entries and not parsed.get("version"):
        reason = parsed.get("bozo_exception") or "no RSS, Atom or RDF feed element"
        raise ParseError(f"not a feed: {reason}")
    is_rss = str(parsed.get("version", "")).startswith("rss")
    entries: list[Entry] = []
    for item in parsed.entries:
        entry = _entry_from_feedparser(item, result.url, source, is_rss=is_rss)
        if entry is not None:
            entries.append(entry)
    problem = parsed.get("bozo_exception") if parsed.get("bozo") else None
    # A charset feedparser had to guess past is not damage: the text came out right.
    salvaged = None
    if problem is not None and not isinstance(problem, _CHARSET_NOTES):
        salvaged = f"malformed feed salvaged ({len(entries)} entries read): {problem}"
    return entries, salvaged


def _repair_for_feedparser(content: bytes) -> bytes:
    """Mend what makes feedparser 6 raise instead of reporting a malformed feed (all found by
    tests/test_fuzz_parse.py): a character reference past U+10FFFF or to a surrogate (`chr()`
    fails in its lenient parser: replaced by U+FFFD), and an XML declaration whose encoding name
    holds a NUL or a non-ASCII byte (its charset detection fails: the name is dropped, so the
    HTTP charset and byte sniffing decide, as with no declaration)."""
    if b"&#" in content:
        content = _CHARACTER_REFERENCE.sub(_valid_reference, content)
    declaration = _ENCODING_DECLARATION.match(content)
    if declaration is not None and not _ENCODING_NAME.fullmatch(declaration.group("name")):
        content = content[: declaration.start("attribute")] + content[declaration.end() :]
    return content


def _valid_reference(match: re.Match[bytes]) -> bytes:
    digits = match.group("hex") or match.group("decimal")
    if len(digits) > 8:
        return b"&#xFFFD;"
    value = int(digits, 16 if match.group("hex") else 10)
    if 0 < value <= 0x10FFFF and not 0xD800 <= value <= 0xDFFF:
        return match.group(0)
    return b"&#xFFFD;"


def _defuse_entities(content: bytes) -> bytes:
    """The document without entity declarations that refer to other entities or to external
    files. Nested entities are the "billion laughs": a 1 KB feed expanding to megabytes of text
    (expat stops at 100 times the input, which for a 10 MB body is a gigabyte, and feedparser
    keeps every piece). Their references are then undefined, so the strict parser gives up and
    feedparser's loose one reads the feed, references left as text. Found with
    tests/test_fuzz_parse.py; a UTF-16 or UTF-32 document is not rewritten (expat's limit holds)."""
    if b"<!ENTITY" not in content and b"<!entity" not in content:
        return content

    def keep_plain(match: re.Match[bytes]) -> bytes:
        return match.group(0) if _PLAIN_ENTITY.fullmatch(match.group(0)) else b""

    return _ENTITY_DECLARATION.sub(keep_plain, content)


def _xml_content_type(result: FetchResult) -> str:
    """The Content-Type to hand feedparser. A byte order mark outranks any label (as in the
    WHATWG and XML encoding rules), and with no label at all feedparser would assume Latin-1
    (HTTP's old default): in both cases `application/xml` lets the BOM and the XML declaration
    decide."""
    if not result.content_type or result.content.startswith(_BOMS):
        return "application/xml"
    return result.content_type


def _entry_from_feedparser(item: Any, base_url: str, source: str, *, is_rss: bool) -> Entry | None:
    link = _absolute(base_url, _text(item.get("link")))
    title = _detail_text(item, "title")
    if not link and not title:
        return None
    published = _from_struct(item.get("published_parsed"))
    # dict.get, not .get: feedparser's get("updated_parsed") falls back to published, with a
    # DeprecationWarning, when the feed gave no update date.
    updated = _from_struct(dict.get(item, "updated_parsed"))
    if is_rss and published is None:
        # feedparser files dc:date under "updated", but RSS has no notion of an update: in RSS 1.0
        # and in RSS 2.0 feeds without pubDate, dc:date is the item's publication date.
        published = updated
    content_html = _feedparser_content(item)
    summary = _detail_text(item, "summary")
    if not summary and content_html:
        summary = html_to_text(content_html)
    return Entry(
        source=source,
        guid=_text(item.get("id")).strip() or link or _hash_guid(title, published or updated),
        url=link,
        title=title,
        summary=summary,
        content_html=content_html,
        author=_feedparser_author(item),
        published=published,
        updated=updated,
    )


def _detail_text(item: Any, key: str) -> str:
    """A title or summary as plain text, whether the feed declared it text or HTML."""
    value = _text(item.get(key))
    detail = item.get(f"{key}_detail") or {}
    if detail.get("type") == "text/plain":
        return clean_text(value)
    return html_to_text(value)


def _feedparser_content(item: Any) -> str | None:
    contents = item.get("content") or []
    if not contents:
        return None
    preferred = next(
        (c for c in contents if c.get("type") in ("text/html", "application/xhtml+xml")),
        contents[0],
    )
    value = _text(preferred.get("value"))
    if not value.strip():
        return None
    if preferred.get("type") == "text/plain":
        return f"<p>{html.escape(value)}</p>"
    return value


def _feedparser_author(item: Any) -> str | None:
    detail = item.get("author_detail") or {}
    name = clean_text(_text(detail.get("name"))) or clean_text(_text(item.get("author")))
    return name or None


def _from_struct(value: Any) -> datetime | None:
    """feedparser's *_parsed values are UTC struct_time."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    except (OverflowError, ValueError, TypeError, OSError):
        return None


# -- JSON Feed ------------------------------------------------------------------------------------


def _parse_json_feed(result: FetchResult, source: str) -> list[Entry]:
    try:
        document = json.loads(result.content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ParseError(f"not a JSON Feed: invalid JSON ({error})") from None
    if not isinstance(document, dict):
        raise ParseError("not a JSON Feed: the document is not an object")
    feed_version = document.get("version")
    if not isinstance(feed_version, str) or not _JSON_FEED_VERSION.match(feed_version):
        raise ParseError(f"not a JSON Feed: version is {feed_version!r}")
    items = document.get("items")
    if not isinstance(items, list):
        raise ParseError("JSON Feed without an items list")
    feed_author = _json_author(document)
    entries: list[Entry] = []
    for item in items:
        if isinstance(item, dict):
            entry = _entry_from_json(item, result.url, source, feed_author)
            if entry is not None:
                entries.append(entry)
    return entries


def _entry_from_json(
    item: Mapping[str, Any], base_url: str, source: str, feed_author: str | None
) -> Entry | None:
    link = _absolute(base_url, _text(item.get("url")) or _text(item.get("external_url")))
    title = html_to_text(_text(item.get("title")))
    if not link and not title:
        return None
    content_html = _text(item.get("content_html")) or None
    content_text = _text(item.get("content_text"))
    summary = html_to_text(_text(item.get("summary")))
    if not summary:
        summary = clean_text(content_text) if content_text else html_to_text(content_html or "")
    if content_html is None and content_text:
        content_html = _text_to_html(content_text)
    published = _from_rfc3339(item.get("date_published"))
    updated = _from_rfc3339(item.get("date_modified"))
    raw_id = item.get("id")  # a string by the spec, but numbers occur in the wild
    guid = "" if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) else str(raw_id)
    return Entry(
        source=source,
        guid=guid.strip() or link or _hash_guid(title, published or updated),
        url=link,
        title=title,
        summary=summary,
        content_html=content_html,
        author=_json_author(item) or feed_author,
        published=published,
        updated=updated,
    )


def _json_author(holder: Mapping[str, Any]) -> str | None:
    """`authors` (1.1) when present, else the deprecated `author` object (1.0)."""
    authors = holder.get("authors")
    candidates = authors if isinstance(authors, list) and authors else [holder.get("author")]
    names = [
        clean_text(_text(candidate.get("name")))
        for candidate in candidates
        if isinstance(candidate, dict)
    ]
    return ", ".join(dict.fromkeys(name for name in names if name)) or None


def _text_to_html(text: str) -> str | None:
    """Plain text (a JSON Feed content_text) as HTML: one escaped `<p>` per blank-line-separated
    paragraph, so that markup-like text ("a <b> c", "AT&T") reads back exactly as written."""
    paragraphs = _BLANK_LINE.split(text.replace("\r\n", "\n").replace("\r", "\n"))
    rendered = "".join(
        f"<p>{html.escape(paragraph.strip(), quote=False)}</p>"
        for paragraph in paragraphs
        if paragraph.strip()
    )
    return rendered or None


def _from_rfc3339(value: Any) -> datetime | None:
    """An RFC 3339 date as aware UTC; None when missing or unreadable. A naive one is taken as UTC.

    A date at the very edge of the calendar ("0001-01-01T00:00:00+01:00") parses but has no UTC
    equivalent (OverflowError): that is a missing date too, never an error that stops the poll.
    """
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None


# -- helpers --------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _absolute(base_url: str, link: str) -> str:
    """The link made absolute; "" unless it is http(s): a javascript:, data: or vbscript: link
    would be republished as the entry's link in our feeds and alerts (tests/test_xss_corpus.py)."""
    link = link.strip()
    if not link:
        return ""
    absolute = urljoin(base_url, link)
    return absolute if urlsplit(absolute).scheme in ("http", "https") else ""


def _hash_guid(title: str, when: datetime | None) -> str:
    """A guid for items that carry neither id nor link: the same item hashes the same each poll."""
    key = f"{title}\n{when.isoformat() if when else ''}"
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


# -- scheduling hints -----------------------------------------------------------------------------


def _hint_number(text: str) -> int | None:
    """A hint's number: ASCII digits, at most six of them (a ttl of 999999 minutes is almost two
    years); anything else is ignored. Found by tests/test_fuzz_parse.py: `str.isdigit` accepts
    "²", which int() refuses, and a 20-digit ttl overflowed timedelta."""
    if not text.isascii() or not text.isdigit() or len(text) > 6:
        return None
    return int(text)


def parse_hints(result: FetchResult) -> FeedHints:
    """An RSS channel's `<ttl>` (minutes), `<skipHours>` and `<skipDays>`; empty hints for any other
    format or when the document cannot be read (hints are optional, never a reason to fail).

    feedparser reads `ttl` but drops the skip lists, so the channel is read again here with lxml,
    recovering from broken markup the same way and never resolving entities or the network.
    """
    if _is_json(result):
        return FeedHints()
    parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True)
    try:
        root = etree.fromstring(result.content, parser=parser)
    except (etree.XMLSyntaxError, ValueError):
        return FeedHints()
    if root is None:
        return FeedHints()
    ttl: int | None = None
    hours: set[int] = set()
    days: set[int] = set()
    for element in root.iter("{*}ttl", "{*}hour", "{*}day"):
        name = etree.QName(element).localname
        text = (element.text or "").strip()
        number = _hint_number(text)
        if name == "ttl" and number is not None and ttl is None:
            ttl = number
        elif name == "hour" and number is not None and number <= 24:
            hours.add(number % 24)  # some feeds count 1-24 instead of 0-23
        elif name == "day" and text.lower() in _DAYS:
            days.add(_DAYS.index(text.lower()))
    return FeedHints(
        ttl=timedelta(minutes=ttl) if ttl else None,
        skip_hours=frozenset(hours),
        skip_days=frozenset(days),
    )
