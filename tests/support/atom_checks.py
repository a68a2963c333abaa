"""The W3C Feed Validation Service's Atom checks that matter to readers, as a local function.

Tests cannot reach validator.w3.org, so the errors and warnings it reports for Atom documents are
encoded here, named after the validator's own message classes (MissingSelf,
SelfDoesntMatchLocation, DuplicateEntries, ContainsUndeclaredHTML, InvalidRFC3339Date,
MissingAuthor...), and every feed wirewatch renders or serves is run through them.
tests/feeds/test_atom.py proves each check fires on a document that breaks it, so a silent
checker cannot make the feeds look valid.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from urllib.parse import urlsplit

from lxml import etree

ATOM = "{http://www.w3.org/2005/Atom}"
HISTORY = "{http://purl.org/syndication/history/1.0}"
KNOWN_NAMESPACES = {ATOM[1:-1], HISTORY[1:-1]}

# RFC 3339 date-time, as RFC 4287 3.3 requires (upper-case T and Z only, seconds mandatory).
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})")
_LOOKS_LIKE_HTML = re.compile(r"<[A-Za-z/!?]|&(?:[A-Za-z][A-Za-z0-9]*|#[0-9]+|#x[0-9A-Fa-f]+);")
# IANA link relations a feed reader may meet in our feeds (and the RFC 4287 ones).
_REGISTERED_RELS = {
    "alternate",
    "related",
    "self",
    "enclosure",
    "via",
    "hub",
    "current",
    "prev-archive",
    "next-archive",
    "first",
    "last",
    "next",
    "previous",
}
_TEXT_CONSTRUCTS = ("title", "subtitle", "summary", "rights")


def validator_problems(body: bytes, served_url: str | None = None) -> list[str]:
    """Every problem found, as "MessageClass: detail"; an empty list means clean.

    ``served_url`` is the URL the document was fetched from: its ``rel="self"`` must equal it.
    """
    try:
        root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as error:
        return [f"NotWellFormed: {error}"]
    if root.tag != f"{ATOM}feed":
        return [f"UnexpectedRoot: {root.tag}"]
    problems: list[str] = []
    problems += _namespace_problems(root)
    problems += _required(root, "feed", ("id", "title", "updated"))
    links = root.findall(f"{ATOM}link")
    selves = [link.get("href") for link in links if link.get("rel") == "self"]
    if not selves:
        problems.append("MissingSelf: the feed has no rel=self link")
    elif served_url is not None and selves[0] != served_url:
        problems.append(f"SelfDoesntMatchLocation: {selves[0]} served at {served_url}")
    problems += _link_problems(links, "feed")
    feed_has_author = root.find(f"{ATOM}author/{ATOM}name") is not None
    problems += _iri_problems(root.findtext(f"{ATOM}id"), "feed id")
    for element in root.iter(f"{ATOM}updated", f"{ATOM}published"):
        if not _is_rfc3339(element.text or ""):
            problems.append(f"InvalidRFC3339Date: {element.text!r}")
    for element in root.iter(*(f"{ATOM}{name}" for name in _TEXT_CONSTRUCTS)):
        problems += _text_construct_problems(element)
    ids = Counter(entry.findtext(f"{ATOM}id") for entry in root.iterfind(f"{ATOM}entry"))
    problems += [f"DuplicateEntries: {entry_id}" for entry_id, n in ids.items() if n > 1]
    for index, entry in enumerate(root.iterfind(f"{ATOM}entry")):
        where = f"entry {index}"
        problems += _required(entry, where, ("id", "title", "updated"))
        problems += _iri_problems(entry.findtext(f"{ATOM}id"), f"{where} id")
        if not feed_has_author and entry.find(f"{ATOM}author/{ATOM}name") is None:
            problems.append(f"MissingAuthor: {where}")
        entry_links = entry.findall(f"{ATOM}link")
        problems += _link_problems(entry_links, where)
        has_alternate = any(link.get("rel", "alternate") == "alternate" for link in entry_links)
        if entry.find(f"{ATOM}content") is None and not has_alternate:
            problems.append(f"MissingContentOrAlternate: {where}")
        for category in entry.iterfind(f"{ATOM}category"):
            if not (category.get("term") or "").strip():
                problems.append(f"MissingAttribute: {where} category term")
        content = entry.find(f"{ATOM}content")
        if content is not None and content.get("type", "text") not in ("text", "html", "xhtml"):
            problems.append(f"InvalidContentType: {where} {content.get('type')}")
    return problems


def _namespace_problems(root: etree._Element) -> list[str]:
    found = {etree.QName(element).namespace for element in root.iter(etree.Element)}
    return [f"UndefinedElement: namespace {ns}" for ns in sorted(found - KNOWN_NAMESPACES, key=str)]


def _required(parent: etree._Element, where: str, names: tuple[str, ...]) -> list[str]:
    problems = []
    for name in names:
        count = len(parent.findall(f"{ATOM}{name}"))
        if count == 0:
            problems.append(f"MissingElement: {where} {name}")
        elif count > 1:
            problems.append(f"DuplicateElement: {where} {name}")
    return problems


def _link_problems(links: list[etree._Element], where: str) -> list[str]:
    problems = []
    alternates: Counter[tuple[str | None, str | None]] = Counter()
    for link in links:
        href = link.get("href") or ""
        rel = link.get("rel", "alternate")
        if not href.strip():
            problems.append(f"MissingHref: {where} link rel={rel}")
        elif not urlsplit(href).scheme:
            problems.append(f"RelativeHref: {where} {href}")
        if rel not in _REGISTERED_RELS and not urlsplit(rel).scheme:
            problems.append(f"UnregisteredAtomLinkRel: {where} {rel}")
        if rel == "alternate":
            alternates[(link.get("type"), link.get("hreflang"))] += 1
    problems += [
        f"DuplicateAtomLink: {where} alternate {key}" for key, n in alternates.items() if n > 1
    ]
    return problems


def _iri_problems(value: str | None, where: str) -> list[str]:
    if value is None:
        return []
    if not urlsplit(value.strip()).scheme:
        return [f"InvalidFullLink: {where} {value!r} is not an absolute IRI"]
    return []


def _text_construct_problems(element: etree._Element) -> list[str]:
    kind = element.get("type", "text")
    name = etree.QName(element).localname
    if kind not in ("text", "html", "xhtml"):
        return [f"InvalidTextType: {name} type={kind}"]
    if kind == "text" and _LOOKS_LIKE_HTML.search(element.text or ""):
        return [f"ContainsUndeclaredHTML: {name} {element.text!r}"]
    return []


def _is_rfc3339(text: str) -> bool:
    if not _RFC3339.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
