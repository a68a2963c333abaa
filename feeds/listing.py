"""A news page without a feed → [Entry]: CSS selectors pick the article links off a listing page.

For a source of type `page`, `links` selects the article links (an `<a href>`, or an element with
one `<a href>` inside); `title` and `date`, when given, are looked up inside the same element
(else the link's text is the title and the entry has no date). Every entry carries only a title
and a link, so the article page is always fetched for the text (`full_text: auto` does that).

The entries' guid is the link itself, absolute and without trackers: a listing has no other
stable identifier. CSS selection is lxml's cssselect (through `cssselect`), the same engine
scrapers use; a date is an ISO 8601 `datetime` attribute (as `<time>` has) or an RFC 2822
date, else the entry is undated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urljoin, urlsplit

from cssselect import SelectorError
from lxml import etree, html

from feeds.canonical import clean_url
from feeds.errors import ParseError
from feeds.extract import decode_html
from feeds.models import Entry, FetchResult
from feeds.text import clean_text

__all__ = ["ListingSelectors", "check_selector", "parse_listing"]


@dataclass(frozen=True, slots=True)
class ListingSelectors:
    links: str
    """CSS selector of the article links (or of elements that each hold one link)."""
    title: str | None = None
    """CSS selector of the title inside each selected element; None: the link's text."""
    date: str | None = None
    """CSS selector of the date inside each selected element (`datetime` attribute or text)."""


def check_selector(selector: str) -> str:
    """`selector` if lxml can compile it; ValueError with the reason otherwise (for settings)."""
    try:
        html.fromstring("<p></p>").cssselect(selector)
    except SelectorError as error:
        raise ValueError(f'bad CSS selector "{selector}": {error}') from None
    return selector


def parse_listing(result: FetchResult, source: str, selectors: ListingSelectors) -> list[Entry]:
    """The article links of a listing page, in page order, each once."""
    try:
        document = html.document_fromstring(decode_html(result.content))
    except (etree.ParserError, ValueError) as error:
        raise ParseError(f"not an HTML page: {error}") from None
    entries: list[Entry] = []
    seen: set[str] = set()
    for element in document.cssselect(selectors.links):
        link = element if element.tag == "a" else next(element.iter("a"), None)
        href = (link.get("href") or "").strip() if link is not None else ""
        if link is None or not href:
            continue
        url = clean_url(urljoin(result.url, href))
        if urlsplit(url).scheme not in ("http", "https") or url in seen:
            continue
        seen.add(url)
        title = _text_of(element, selectors.title) if selectors.title else ""
        title = title or clean_text(link.text_content())
        entries.append(
            Entry(
                source=source,
                guid=url,
                url=url,
                title=title,
                summary="",
                published=_date_of(element, selectors.date) if selectors.date else None,
            )
        )
    return entries


def _text_of(element: html.HtmlElement, selector: str) -> str:
    found = element.cssselect(selector)
    return clean_text(found[0].text_content()) if found else ""


def _date_of(element: html.HtmlElement, selector: str) -> datetime | None:
    found = element.cssselect(selector)
    if not found:
        return None
    value = (found[0].get("datetime") or found[0].text_content()).strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
