"""html → Article: the main text of a news page, with its headline, byline, date and standfirst.

The work is split by what each tool is good at:

1. decode bytes once (BOM, then `<meta charset>`, else UTF-8 with replacement);
2. parse with lxml, read the metadata (JSON-LD, og:/article: meta, `<time>`, `<h1>`) and note the
   image captions, before anything modifies the tree;
3. prune what is never body (dialogs, hidden elements, captions), and separate block elements so
   that no two blocks' words get glued when text is taken (`feeds.text.separate_blocks`);
4. let trafilatura find the main content (favour precision: a missed sentence costs less than an
   alert fired by a donation appeal);
5. run our boilerplate rules over its blocks (`feeds.boilerplate`), then render the kept blocks as
   paragraphs of display text and as sanitised HTML (nh3 allowlist, absolute URLs).

`extract_article` never raises: a page that cannot be read gives an Article with no paragraphs and
`empty_reason` saying why, so one broken page never stops a batch.
"""

from __future__ import annotations

import codecs
import copy
import dataclasses
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import urljoin, urlsplit

import lxml.html
import nh3
import trafilatura
from lxml import etree

from feeds.boilerplate import Verdict, judge_blocks
from feeds.chunks import find_continuations
from feeds.models import Article
from feeds.templates import SiteTemplate, fingerprint
from feeds.text import (
    block_text,
    clean_text,
    fold_for_comparison,
    paragraphs_from_line_breaks,
    parse_fragment,
    repair_mojibake,
    separate_blocks,
)

logger = logging.getLogger(__name__)

MAX_HTML_CHARS = 6_000_000
"""Pages longer than this are cut before parsing: no real article needs more, and the cost of
parsing grows with size. (The fetcher caps downloads too; this guards direct callers.)"""

MAX_ELEMENTS = 50_000
"""Pages with more elements than this are refused: real article pages have a few thousand, and the
content engine's cost grows faster than linearly with the element count (a million-element page
takes over a minute)."""

_ALLOWED_TAGS = {
    "p", "h2", "h3", "h4", "ul", "ol", "li", "blockquote", "a", "img", "em", "strong", "b", "i",
    "br",
}  # fmt: skip
_ALLOWED_ATTRIBUTES = {"a": {"href"}, "img": {"src", "alt"}}
_URL_SCHEMES = {"http", "https", "mailto"}

# Elements that are never body text, removed before the content engine sees the tree.
_PRUNE_XPATH = (
    "//script | //style | //noscript | //template | //dialog | //figcaption"
    " | //*[@hidden] | //*[@aria-hidden='true'] | //*[@role='dialog' or @role='alertdialog']"
)

_META_CHARSET = re.compile(
    rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE
)
_XML_DECLARATION = re.compile(r"^\s*<\?xml[^>]*\?>", re.IGNORECASE)
_LOOKS_LIKE_HTML = re.compile(
    r"<\s*(!doctype|html|head|body|div|p|article|main|section|span|h[1-6]|meta|title|a)\b",
    re.IGNORECASE,
)
# Plain strings (no smart strings pointing back into the tree): a third faster on big pages.
_VISIBLE_TEXT = etree.XPath(
    "/html/body//text()[not(parent::script or parent::style)]", smart_strings=False
)
_JUNK_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffd]")
_SEPARATORS = r"\s*[|\-–—:·•»]\s*"
# Characters XML forbids. lxml's HTML parser keeps them in the tree, but then refuses any text
# assigned there that contains one (ValueError), so block separation would fail on the page.
# They are never display text: removed before parsing.
_XML_INCOMPATIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


@dataclass(frozen=True, slots=True)
class CleanedPage:
    """An article, and the fingerprints of every block its page offered as body (kept or not),
    which is what a site template learns from (`feeds.templates.learn`)."""

    article: Article
    fingerprints: frozenset[str] = frozenset()


def extract_article(html: str | bytes, url: str, template: SiteTemplate | None = None) -> Article:
    """Clean one page into an Article; never raises (see the module docstring).

    `template` is the site's learned boilerplate (`feeds.templates`): blocks it knows as the
    site's furniture are dropped too.
    """
    return clean_page(html, url, template).article


def clean_page(html: str | bytes, url: str, template: SiteTemplate | None = None) -> CleanedPage:
    """`extract_article`, also giving the page's block fingerprints to learn from."""
    try:
        return _extract(html, url, template)
    except Exception as error:  # a broken page must never stop a batch
        logger.warning("extract failed for %s: %r", url, error)
        return CleanedPage(_empty(url, f"could not be parsed ({type(error).__name__})"))


def _empty(url: str, reason: str, **fields: Any) -> Article:
    return Article(
        url=url,
        title=fields.pop("title", ""),
        paragraphs=(),
        html="",
        empty_reason=reason,
        **fields,
    )


def decode_html(content: bytes) -> str:
    """Bytes → text: a BOM wins, then a `<meta charset>` in the first 4 KB, else UTF-8."""
    for bom, encoding in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if content.startswith(bom):
            return content[len(bom) :].decode(encoding, errors="replace")
    match = _META_CHARSET.search(content[:4096])
    if match:
        try:
            encoding = codecs.lookup(match.group(1).decode("ascii")).name
        except (LookupError, UnicodeDecodeError):
            encoding = "utf-8"
        return content.decode(encoding, errors="replace")
    return content.decode("utf-8", errors="replace")


def _not_html_reason(text: str) -> str | None:
    """A short reason when `text` is plainly not an HTML page, else None."""
    if not text.strip():
        return "empty page"
    sample = text[:8192]
    junk = len(_JUNK_CHARACTER.findall(sample))
    if junk > len(sample) * 0.05:
        return "binary content, not HTML"
    if not _LOOKS_LIKE_HTML.search(sample):
        return "not HTML"
    return None


def _extract(html: str | bytes, url: str, template: SiteTemplate | None) -> CleanedPage:
    text = decode_html(html) if isinstance(html, bytes) else html
    reason = _not_html_reason(text)
    if reason:
        return CleanedPage(_empty(url, reason))
    text = _XML_INCOMPATIBLE.sub("", _XML_DECLARATION.sub("", text[:MAX_HTML_CHARS], count=1))
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        tree = lxml.html.document_fromstring(text, parser=parser)
    except (etree.ParserError, ValueError):
        return CleanedPage(_empty(url, "not HTML"))

    if tree.xpath("count(//*)") >= MAX_ELEMENTS:
        return CleanedPage(_empty(url, f"page too complex (over {MAX_ELEMENTS} elements)"))
    meta = read_metadata(tree, url)
    captions = {fold_for_comparison(block_text(node)) for node in tree.iter("figcaption")}
    for node in tree.xpath(_PRUNE_XPATH):
        if node.getparent() is not None:
            node.drop_tree()
    paragraphs_from_line_breaks(tree)
    separate_blocks(tree)
    blocks = _content_blocks(tree, url)
    if blocks is None:
        return CleanedPage(_empty(meta.canonical_url, "no article text found", **meta.fields()))

    if meta.standfirst and fold_for_comparison(meta.standfirst) in {
        fold_for_comparison(block.text) for block in blocks
    }:
        # The page's description is its first paragraph, inside the body: the article's lede,
        # not a standfirst above it. It stays in the body, where a reader expects it.
        meta = dataclasses.replace(meta, standfirst=None)
    fingerprints = frozenset(fingerprint(block.text) for block in blocks if block.text)
    paragraphs, body_html = _keep_article_blocks(blocks, meta, captions, url, template)
    if not paragraphs:
        article = _empty(meta.canonical_url, "no article text found", **meta.fields())
    else:
        article = Article(
            url=meta.canonical_url, paragraphs=paragraphs, html=body_html, **meta.fields()
        )
    return CleanedPage(article, fingerprints)


FALLBACK_BELOW_CHARS = 500
"""When trafilatura's own algorithm keeps less text than this, its fallbacks (readability,
jusText) are consulted too; see `_content_blocks`."""


def _trafilatura_body(tree: Any, url: str, *, fast: bool) -> Any:
    document = trafilatura.bare_extraction(
        tree,
        url=url,
        favor_precision=True,
        include_comments=False,
        include_tables=True,
        include_images=True,
        include_links=True,
        include_formatting=True,
        with_metadata=False,
        deduplicate=False,
        fast=fast,
    )
    return getattr(document, "body", None)


def _content_blocks(tree: Any, url: str) -> list[_Block] | None:
    """The body's blocks: trafilatura's main algorithm, its fallbacks only when that found (almost)
    nothing, then the sibling chunks it missed. None when no candidate has any body.

    trafilatura always runs its fallback extractors and keeps theirs when its own looks too short
    by length alone; on the development half of the benchmark that swap helped only on pages where
    its own algorithm had found close to nothing, and cost precision where both had found the
    article (the fallback then brings in comments and link lists). So the fallbacks are run only
    in that first case, which also saves a third of the time on most pages.
    """
    pristine = copy.deepcopy(tree)  # trafilatura edits the tree it is given
    body = _trafilatura_body(tree, url, fast=True)
    blocks = list(_blocks(body)) if body is not None else []
    if sum(len(block.text) for block in blocks) < FALLBACK_BELOW_CHARS:
        body = _trafilatura_body(copy.deepcopy(pristine), url, fast=False)
        if body is None:
            return None
        blocks = list(_blocks(body))
    return _with_continuations(blocks, pristine)


def _with_continuations(blocks: list[_Block], page: Any) -> list[_Block]:
    """The content engine's blocks, with the sibling chunks it left out (`feeds.chunks`)."""
    found = find_continuations(page, [block.text for block in blocks if block.text])

    def as_blocks(elements: tuple[Any, ...]) -> list[_Block]:
        return [
            _Block(_html_tag(element, element.tag), text, element)
            for element in elements
            if (text := _display(element))
        ]

    body = list(blocks)
    for anchor, element in reversed(found.quotes):  # reversed: each goes right after its anchor
        position = 0
        if anchor is not None:
            matches = [i for i, b in enumerate(body) if fold_for_comparison(b.text) == anchor]
            position = matches[-1] + 1 if matches else len(body)
        body[position:position] = as_blocks((element,))
    return [*as_blocks(found.before), *body, *as_blocks(found.after)]


def html_to_article_body(fragment: str, base_url: str) -> tuple[tuple[str, ...], str]:
    """A feed's own article HTML (content:encoded, atom:content...) → (paragraphs, safe HTML).

    The fragment is already the article, so no main-content detection runs; it still goes through
    the same pruning, block separation, boilerplate rules and allowlist as a page (feeds append
    newsletter prompts and share links too). Never raises: unusable input gives ((), "").
    """
    if not fragment.strip():
        return (), ""
    try:
        root = parse_fragment(_XML_INCOMPATIBLE.sub("", fragment))
        if root is None:
            return (), ""
        for node in root.xpath(_PRUNE_XPATH.replace("//", ".//")):
            if node.getparent() is not None:
                node.drop_tree()
        separate_blocks(root)
        # _blocks walks the children of what it is given; a wrapper makes the fragment's own
        # loose text (a feed that sends plain text as "HTML") one of them.
        wrapper = lxml.html.Element("div")
        wrapper.append(root)
        meta = PageMetadata(base_url, "", None, None, None, None, None)
        return _keep_article_blocks(list(_blocks(wrapper)), meta, set(), base_url)
    except Exception as error:  # same promise as extract_article: a bad entry never stops a poll
        logger.warning("feed content of %s could not be cleaned: %r", base_url, error)
        return (), ""


def _keep_article_blocks(
    blocks: list[_Block],
    meta: PageMetadata,
    captions: set[str],
    url: str,
    template: SiteTemplate | None = None,
) -> tuple[tuple[str, ...], str]:
    """Drop boilerplate blocks; the rest as display paragraphs and as sanitised HTML."""
    verdicts = judge_blocks(
        [block.text for block in blocks],
        title=meta.title,
        standfirst=meta.standfirst,
        author=meta.author,
        dateline=meta.dateline,
    )
    if template is not None:
        verdicts = _apply_template(verdicts, template)
    # Images carry no text of their own: they are kept (their alt is checked when rendering).
    kept = [
        block
        for block, verdict in zip(blocks, verdicts, strict=True)
        if verdict.reason is None or block.tag == "img"
    ]
    dropped = {
        fold_for_comparison(verdict.text) for verdict in verdicts if verdict.reason is not None
    }
    paragraphs = tuple(block.text for block in kept if block.text)
    if not paragraphs:
        return (), ""
    return paragraphs, _sanitise(_render(kept, captions | dropped), url)


TEMPLATE_MAX_SHARE = 0.5
"""A site template may remove at most this share of a page's remaining text; beyond, the page is
not the kind the template was learned on (an index page, a redesign) and the template is ignored
for it."""


def _apply_template(verdicts: list[Verdict], template: SiteTemplate) -> list[Verdict]:
    """Mark the blocks the site's template knows as furniture (see `TEMPLATE_MAX_SHARE`)."""
    furniture = template.boilerplate()
    if not furniture:
        return verdicts
    marked = [
        Verdict(v.text, "site template")
        if v.reason is None and v.text and fingerprint(v.text) in furniture
        else v
        for v in verdicts
    ]
    remaining = sum(len(v.text) for v in verdicts if v.reason is None)
    removed = sum(len(v.text) for v in marked if v.reason == "site template")
    return verdicts if removed > TEMPLATE_MAX_SHARE * remaining else marked


# ---------------------------------------------------------------------------------------------
# Metadata


@dataclass(frozen=True, slots=True)
class PageMetadata:
    """What the page says about the article, outside its body."""

    canonical_url: str
    title: str
    standfirst: str | None
    author: str | None
    published: datetime | None
    language: str | None
    dateline: str | None
    """The visible date text (`<time>` content), so that a body block repeating it is dropped."""
    updated: datetime | None = None
    image: str | None = None

    def fields(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "standfirst": self.standfirst,
            "author": self.author,
            "published": self.published,
            "language": self.language,
            "updated": self.updated,
            "image": self.image,
        }


def read_metadata(tree: Any, url: str) -> PageMetadata:
    """Read headline, byline, date, language and canonical URL from an lxml document."""
    metas: dict[str, str] = {}
    for node in tree.iter("meta"):
        key = (node.get("property") or node.get("name") or node.get("itemprop") or "").lower()
        content = node.get("content")
        if key and content and key not in metas:
            metas[key] = clean_text(content)
    ld = list(_json_ld_articles(tree))

    site_names = {metas.get("og:site_name"), metas.get("application-name")}
    site_names |= {_ld_name(item.get("publisher")) for item in ld}
    known_sites = {name for name in site_names if name}

    h1_texts = [block_text(node) for node in tree.iter("h1")]
    title_tag = next((clean_text(node.text_content()) for node in tree.iter("title")), "")
    declared = [
        metas.get("og:title"),
        _ld_str(ld, "headline"),
        metas.get("twitter:title"),
        title_tag,
    ]
    declared_titles = [_strip_site_name(t, known_sites) for t in declared if t]
    folded_titles = [fold_for_comparison(t) for t in declared_titles]
    title = ""
    for h1 in h1_texts:  # the headline as shown, when an h1 agrees with what the page declares
        folded_h1 = fold_for_comparison(h1)
        if h1 and any(t == folded_h1 or t.startswith(folded_h1) for t in folded_titles):
            title = h1
            break
    if not title:
        title = next((t for t in declared_titles if t), "") or next((h for h in h1_texts if h), "")

    # The body's text with a space at every text-node boundary: a C-speed walk, and since a
    # standfirst sits within one element, splitting words at inline markup costs nothing here.
    visible = fold_for_comparison(" ".join(_VISIBLE_TEXT(tree)))
    standfirst = None
    for candidate in (
        metas.get("og:description"),
        metas.get("description"),
        _ld_str(ld, "description"),
    ):
        folded = fold_for_comparison(candidate) if candidate else ""
        if candidate and len(candidate) <= 600 and folded and folded in visible:
            standfirst = candidate
            break

    author = _ld_authors(ld) or metas.get("author") or metas.get("article:author")
    if author and urlsplit(author).scheme in {"http", "https"}:
        author = None
    if not author:
        author = next(
            (block_text(n) for n in tree.xpath("//*[@rel='author']") if block_text(n)), None
        )

    times = tree.xpath("//time[@datetime]")
    published = _first_datetime(
        [
            _ld_str(ld, "datePublished"),
            metas.get("article:published_time"),
            metas.get("datepublished"),
            metas.get("og:published_time"),
            *(node.get("datetime") for node in times),
        ]
    )
    dateline = next((block_text(node) for node in times if block_text(node)), None)
    updated = _first_datetime(
        [
            _ld_str(ld, "dateModified"),
            metas.get("article:modified_time"),
            metas.get("og:updated_time"),
            metas.get("datemodified"),
        ]
    )
    image = _absolute_http_url(
        url,
        metas.get("og:image")
        or metas.get("og:image:url")
        or metas.get("twitter:image")
        or metas.get("twitter:image:src")
        or _ld_image(ld),
    )

    language = tree.get("lang") or metas.get("og:locale") or _ld_str(ld, "inLanguage")
    language = language.strip().replace("_", "-") if language else None

    canonical = next(
        (node.get("href") for node in tree.xpath("//link[@rel='canonical'][@href]")), None
    )
    canonical = canonical or metas.get("og:url")
    canonical_url = url
    if canonical:
        absolute = urljoin(url, canonical.strip())
        if urlsplit(absolute).scheme in {"http", "https"}:
            canonical_url = absolute
    return PageMetadata(
        canonical_url,
        title,
        standfirst,
        author or None,
        published,
        language or None,
        dateline,
        updated,
        image,
    )


def _absolute_http_url(base: str, value: str | None) -> str | None:
    """`value` resolved against `base`, when that gives an http(s) URL; else None."""
    if not value:
        return None
    absolute = urljoin(base, value.strip())
    return absolute if urlsplit(absolute).scheme in {"http", "https"} else None


def _ld_image(items: list[dict[str, Any]]) -> str | None:
    """The first JSON-LD image: a URL string, an ImageObject, or a list of either."""
    for item in items:
        value = item.get("image")
        for candidate in value if isinstance(value, list) else [value]:
            if isinstance(candidate, dict):
                candidate = candidate.get("url") or candidate.get("contentUrl")
            if isinstance(candidate, str) and candidate.strip():
                return candidate.strip()
    return None


def _json_ld_articles(tree: Any) -> Iterator[dict[str, Any]]:
    """The JSON-LD objects of the page (flattening lists and @graph); bad JSON is skipped."""
    for node in tree.xpath("//script[@type='application/ld+json']"):
        try:
            data = json.loads(node.text or "")
        except ValueError:
            continue
        pending = [data]
        while pending:
            item = pending.pop(0)
            if isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, dict):
                if "@graph" in item:
                    pending.extend(item["@graph"] if isinstance(item["@graph"], list) else [])
                kind = item.get("@type")
                kinds = kind if isinstance(kind, list) else [kind]
                if any(
                    isinstance(k, str) and ("Article" in k or k == "BlogPosting") for k in kinds
                ):
                    yield item


def _ld_str(items: list[dict[str, Any]], key: str) -> str | None:
    for item in items:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return clean_text(value)
    return None


def _ld_name(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("name")
    return clean_text(value) if isinstance(value, str) and value.strip() else None


def _ld_authors(items: list[dict[str, Any]]) -> str | None:
    for item in items:
        value = item.get("author")
        names = [_ld_name(v) for v in (value if isinstance(value, list) else [value])]
        found = [name for name in names if name]
        if found:
            return ", ".join(dict.fromkeys(found))
    return None


def _strip_site_name(title: str, site_names: set[str]) -> str:
    """Remove a " | Site" / " - Site" suffix (or prefix) when Site is the page's own site name."""
    for name in site_names:
        escaped = re.escape(name)
        stripped = re.sub(f"{_SEPARATORS}{escaped}$", "", title, flags=re.IGNORECASE)
        stripped = re.sub(f"^{escaped}{_SEPARATORS}", "", stripped, flags=re.IGNORECASE)
        if stripped and stripped != title:
            return stripped.strip()
    return title


def _first_datetime(candidates: list[str | None]) -> datetime | None:
    """The first usable ISO date, as aware UTC; an aware one is preferred, a naive one is taken as
    UTC. A date with no UTC equivalent ("0001-01-01T00:00:00+01:00" overflows) is unusable."""
    naive: datetime | None = None
    for candidate in candidates:
        if not candidate:
            continue
        try:
            parsed = datetime.fromisoformat(candidate.strip())
            if parsed.tzinfo is not None:
                return parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            continue
        naive = naive or parsed.replace(tzinfo=UTC)
    return naive


# ---------------------------------------------------------------------------------------------
# Body: trafilatura's XML → blocks → paragraphs and HTML


@dataclass(frozen=True, slots=True)
class _Block:
    """One unit of the body: a paragraph, heading, list item, quote, table row or image."""

    tag: str
    """The HTML tag it renders as: p, h2, h3, h4, li, blockquote or img."""
    text: str
    element: Any
    container: Any = None
    """For list items: the list element, so consecutive items are wrapped together."""


_HEADINGS = {"h1": "h2", "h2": "h2", "h3": "h3", "h4": "h4", "h5": "h4", "h6": "h4"}
_PARAGRAPH_TAGS = {"p", "quote", "blockquote", "code", "pre", "head", *_HEADINGS}
_LIST_TAGS = {"list", "ul", "ol"}
_ITEM_TAGS = {"item", "li"}
_IMAGE_TAGS = {"graphic", "img"}
_CONTAINER_TAGS = {"div", "section", "article", "main", "body", "span", "figure", "center", "font"}


def _blocks(body: Any) -> Iterator[_Block]:
    """Walk the content tree into blocks.

    trafilatura's body is normally its own XML (p, head, list/item, quote, table/row/cell,
    graphic), but when it falls back to another algorithm it hands back HTML (div, p, ul/li, img),
    so both vocabularies are read. Unknown containers are walked into; one that holds bare text
    and no block children is itself a paragraph. The walk uses a stack, not recursion.
    """
    stack: list[Any] = list(reversed(body))
    while stack:
        element = stack.pop()
        tag = element.tag.lower() if isinstance(element.tag, str) else ""
        if tag in _IMAGE_TAGS:
            if element.get("src"):
                yield _Block("img", "", element)
        elif tag in _LIST_TAGS:
            for item in element.iter("item", "li"):
                text = _display(item)
                if text:
                    yield _Block("li", text, item, element)
        elif tag == "table":
            for row in element.iter("row", "tr"):
                cells = [_display(cell) for cell in row.iter("cell", "td", "th")]
                text = " | ".join(cell for cell in cells if cell)
                if text:
                    yield _Block("p", text, None)
        elif tag in _PARAGRAPH_TAGS or tag in _ITEM_TAGS:
            text = _display(element)
            if text:
                yield _Block(_html_tag(element, tag), text, element)
            for image in element.iter("graphic", "img"):
                if image.get("src"):
                    yield _Block("img", "", image)
        elif tag:
            has_blocks = any(
                isinstance(child.tag, str) and child.tag.lower() not in _INLINE_TAGS
                for child in element
            )
            if has_blocks:
                if element.text and element.text.strip():
                    yield _Block("p", clean_text(element.text), None)
                for child in reversed(element):
                    if child.tail and child.tail.strip():
                        stack.append(_TextNode(child.tail))
                    stack.append(child)
            else:
                text = _display(element)
                if text:
                    yield _Block("p", text, element if tag not in _CONTAINER_TAGS else None)
        elif isinstance(element, _TextNode):
            yield _Block("p", clean_text(element.text), None)


_INLINE_TAGS = {
    "hi",
    "ref",
    "lb",
    "a",
    "b",
    "strong",
    "i",
    "em",
    "br",
    "span",
    "small",
    "sup",
    "sub",
    "u",
    "abbr",
    "cite",
    "q",
    "time",
    "mark",
    "font",
}


@dataclass(frozen=True, slots=True)
class _TextNode:
    """Loose text between block elements of a container (an lxml tail), as a pseudo-element."""

    text: str
    tag: str = ""


def _html_tag(element: Any, tag: str) -> str:
    if tag == "head":
        return _HEADINGS.get(element.get("rend", ""), "h3")
    if tag in _HEADINGS:
        return _HEADINGS[tag]
    if tag in {"quote", "blockquote"}:
        return "blockquote"
    return "p"


def _display(element: Any) -> str:
    """Display text of one trafilatura element: line breaks become spaces, mojibake repaired."""
    return clean_text(repair_mojibake(_join_inline(element)))


def _join_inline(element: Any) -> str:
    """Text of an element; inline children join without a space, a line break (`lb`) with one."""
    pieces: list[str] = [element.text or ""]
    for child in element:
        pieces.append(" " if child.tag in {"lb", "br"} else "".join(child.itertext()))
        pieces.append(child.tail or "")
    return "".join(pieces)


def _inline_html(element: Any) -> str:
    """An element's content as HTML with its inline markup (links, emphasis, line breaks)."""
    out: list[str] = [escape(element.text or "", quote=False)]
    for child in element:
        inner = _inline_html(child) if len(child) else escape(child.text or "", quote=False)
        tag = child.tag
        href = child.get("target") or child.get("href")
        if tag in {"lb", "br"}:
            out.append("<br>")
        elif tag in {"ref", "a"} and href:
            out.append(f'<a href="{escape(href)}">{inner}</a>')
        elif (tag == "hi" and child.get("rend") in {"#b", "#strong"}) or tag in {"b", "strong"}:
            out.append(f"<strong>{inner}</strong>")
        elif (tag == "hi" and child.get("rend") in {"#i", "#em"}) or tag in {"i", "em"}:
            out.append(f"<em>{inner}</em>")
        elif tag not in _IMAGE_TAGS and isinstance(tag, str):
            out.append(inner)
        out.append(escape(child.tail or "", quote=False))
    return "".join(out)


def _render(blocks: list[_Block], hidden_alts: set[str]) -> str:
    """The kept blocks as HTML (sanitised afterwards). An image's alt text is dropped when it only
    repeats a caption or a dropped block, since captions are not article text."""
    out: list[str] = []
    open_list: Any = None
    for block in blocks:
        if block.container is not open_list:
            if open_list is not None:
                out.append("</ol>" if open_list.get("rend") == "ol" else "</ul>")
            if block.container is not None:
                out.append("<ol>" if block.container.get("rend") == "ol" else "<ul>")
            open_list = block.container
        if block.tag == "img":
            alt = clean_text(block.element.get("alt") or "")
            folded_alt = fold_for_comparison(alt)
            if folded_alt in hidden_alts or any(
                folded_alt and c.startswith(folded_alt) for c in hidden_alts
            ):
                alt = ""
            out.append(f'<p><img src="{escape(block.element.get("src"))}" alt="{escape(alt)}"></p>')
        elif block.element is None:
            out.append(f"<p>{escape(block.text, quote=False)}</p>")
        else:
            out.append(f"<{block.tag}>{_inline_html(block.element)}</{block.tag}>")
    if open_list is not None:
        out.append("</ol>" if open_list.get("rend") == "ol" else "</ul>")
    return "\n".join(out)


def _sanitise(html: str, base_url: str) -> str:
    """Allowlist the HTML with nh3 and make every link and image URL absolute."""

    def absolute(element: str, attribute: str, value: str) -> str | None:
        if (element, attribute) in {("a", "href"), ("img", "src")}:
            resolved = urljoin(base_url, value.strip())
            return resolved if urlsplit(resolved).scheme in _URL_SCHEMES else None
        return value

    return nh3.clean(
        html,
        tags=_ALLOWED_TAGS,
        attributes=_ALLOWED_ATTRIBUTES,
        url_schemes=_URL_SCHEMES,
        attribute_filter=absolute,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
