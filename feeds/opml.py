"""OPML 2.0 subscription lists in and out: the format every feed reader imports and exports.

Reading is lenient about what readers write (nested folders, `type="rss"` or none, `text` or
`title`) and strict about safety: lxml with entities and network access off, so an OPML file
cannot make us read local files or the network. Writing is deterministic (same sources, same
bytes), so an exported file can be kept under version control.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from lxml import etree

__all__ = ["OpmlError", "Outline", "parse_opml", "render_opml"]


class OpmlError(ValueError):
    """The file is not OPML we can read."""


@dataclass(frozen=True, slots=True)
class Outline:
    """One subscription: the feed's URL, its title and the site it belongs to (may be empty)."""

    xml_url: str
    title: str = ""
    html_url: str = ""


def parse_opml(content: bytes) -> list[Outline]:
    """Every outline with an http(s) `xmlUrl`, in document order, each URL once."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        root = etree.fromstring(content, parser=parser)
    except etree.XMLSyntaxError as error:
        raise OpmlError(f"not well-formed XML: {error}") from None
    if etree.QName(root).localname != "opml":
        raise OpmlError(f"the root element is <{etree.QName(root).localname}>, not <opml>")
    found: dict[str, Outline] = {}
    for element in root.iter("{*}outline", "outline"):
        url = (element.get("xmlUrl") or element.get("xmlurl") or "").strip()
        if urlsplit(url).scheme not in ("http", "https") or url in found:
            continue
        title = (element.get("title") or element.get("text") or "").strip()
        found[url] = Outline(url, title, (element.get("htmlUrl") or "").strip())
    return list(found.values())


def render_opml(title: str, outlines: Sequence[Outline]) -> bytes:
    """An OPML 2.0 document listing `outlines` in order."""
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    for outline in outlines:
        attributes = {"type": "rss", "text": outline.title or outline.xml_url}
        attributes["title"] = attributes["text"]
        attributes["xmlUrl"] = outline.xml_url
        if outline.html_url:
            attributes["htmlUrl"] = outline.html_url
        etree.SubElement(body, "outline", attributes)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
