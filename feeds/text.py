"""Text hygiene for display text taken out of HTML.

Two jobs, kept apart because they happen at different moments:

* `separate_blocks` runs on the HTML tree *before* any text is taken out of it. Pages often put
  block elements side by side with no whitespace between them (``<p>logged in</p><p>Please``);
  taking the text of such a tree glues the words ("logged inPlease"). Guessing where to cut a glued
  string afterwards is hopeless, but inserting a separator between block elements is exact.
* `clean_text` runs on each paragraph of display text: it turns the many space-like and invisible
  characters that pages carry into plain spaces (or nothing) and collapses whitespace, while keeping
  typographic quotes and dashes, which are part of the text a reader sees.

`block_text` (an lxml element) and `html_to_text` (an HTML fragment, such as a feed's title or
summary) take display text out of HTML; both end in `clean_text`, so every text the pipeline shows
or matches is clean the same way. `fold_for_comparison` is the key for asking whether two display
texts say the same thing (a block repeating the headline, an image alt repeating a caption).
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from typing import Any

import lxml.html
from lxml import etree

# Block-level (and line-breaking) HTML elements: the text on either side of one of these is never
# part of the same word.
BLOCK_TAGS: frozenset[str] = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "details", "dialog", "div", "dl",
        "dt", "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5",
        "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul", "button", "option", "label", "img",
    }
)  # fmt: skip

_INVISIBLE_TAGS: frozenset[str] = frozenset({"script", "style", "noscript", "template"})

# Characters that render as a space: NBSP, narrow NBSP, figure space, the en/em/thin/hair spaces,
# ideographic space. They become an ordinary space so that matching and splitting see words.
_SPACE_LIKE = re.compile("[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]")
# Invisible characters that only get in the way of matching: zero-width space, word joiner, BOM,
# soft hyphen, and the C0/C1 control characters other than tab and newline. Zero-width (non-)joiners
# are kept: they change how Persian, Indic scripts and emoji render.
_INVISIBLE = re.compile("[\u200b\u2060\ufeff\u00ad\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WHITESPACE_RUN = re.compile(r"\s+")
_NON_WORD_RUN = re.compile(r"[\W_]+")

# Sequences that UTF-8 text decoded as cp1252/latin-1 produces ("â€™" for "’", "Ã©" for "é").
_MOJIBAKE_MARKERS = re.compile(
    "[ÃÂâ][\u0080-\u00bf\u2018-\u203a\u0152\u0153\u0160\u0161\u017d\u017e\u0178\u0192\u02c6\u02dc\u20ac]"
)


def clean_text(text: str) -> str:
    """One paragraph of display text: space-like characters made spaces, invisible ones removed,
    runs of whitespace (newlines included) collapsed to one space, ends stripped."""
    text = _SPACE_LIKE.sub(" ", text)
    text = _INVISIBLE.sub("", text)
    return _WHITESPACE_RUN.sub(" ", text).strip()


def fold_for_comparison(text: str) -> str:
    """`text` cleaned, with case, punctuation and spacing made irrelevant: "Macron–Putin talks."
    and "macron putin talks" give the same key. For comparing texts, never for display."""
    return _NON_WORD_RUN.sub(" ", clean_text(text)).strip().casefold()


def repair_mojibake(text: str) -> str:
    """Undo the commonest mojibake (UTF-8 bytes read as cp1252), only when that is clearly right.

    The repair is kept only if re-encoding round-trips without error and removes every marker; a
    text that merely contains an "Ã" (a Portuguese word, say) is returned unchanged.
    """
    if not _MOJIBAKE_MARKERS.search(text):
        return text
    try:
        repaired = text.encode("cp1252").decode("utf-8")
    except UnicodeError:
        return text
    return repaired if not _MOJIBAKE_MARKERS.search(repaired) else text


def _ends_with_space(text: str | None) -> bool:
    return bool(text) and text[-1].isspace()  # type: ignore[index]


def _starts_with_space(text: str | None) -> bool:
    return bool(text) and text[0].isspace()  # type: ignore[index]


def separate_blocks(root: Any) -> None:
    """Insert a newline on both sides of every block element of an lxml tree, in place.

    Only where the neighbouring text does not already start or end with whitespace, so a tree
    that is already well spaced is left as it was. `root` is any lxml element (typed loosely so
    that both `lxml.html` and `lxml.etree` trees are accepted).
    """
    for element in root.iter():
        tag = element.tag
        if not isinstance(tag, str) or tag.lower() not in BLOCK_TAGS or element is root:
            continue
        # After the block: its tail.
        if element.tail and not _starts_with_space(element.tail):
            element.tail = "\n" + element.tail
        # Before the block: the previous sibling's tail, or the parent's own text.
        previous = element.getprevious()
        if previous is not None:
            if previous.tail and not _ends_with_space(previous.tail):
                previous.tail += "\n"
            elif not previous.tail:
                previous.tail = "\n"
        else:
            parent = element.getparent()
            if parent is not None and parent.text and not _ends_with_space(parent.text):
                parent.text += "\n"
        # Inside the block: a block child's text that is glued to the block's own last text is
        # handled by the child's own visit, so nothing more is needed here.


# Containers whose loose text, split by blank lines (<br><br>), is really a run of paragraphs.
_LINE_BREAK_CONTAINERS: frozenset[str] = frozenset(
    {
        "div",
        "td",
        "section",
        "article",
        "main",
        "body",
        "blockquote",
        "dd",
        "center",
        "font",
        "span",
    }
)


def paragraphs_from_line_breaks(root: Any) -> None:
    """Turn text split by blank lines (`<br><br>`) in a container into `<p>` elements, in place.

    Many pages (older CMSs, forums, some big sites) write a whole article as loose text in one
    `<div>`, paragraphs separated by two line breaks. Content engines handle that badly: the text
    before a link or emphasis in such a run is lost, and the text after it glued to it ("Pro was"
    becomes "Prowas"). With each run wrapped in its own `<p>`, the page has the structure its
    author meant. A single `<br>` stays inside its paragraph (a line break in an address, a poem);
    block children stay where they are, between the new paragraphs.
    """
    parents = {br.getparent() for br in root.iter("br")}
    for element in parents:
        if element is None or not isinstance(element.tag, str):
            continue
        if element.tag.lower() in _LINE_BREAK_CONTAINERS and _has_blank_line(element):
            _wrap_runs(element)


def _is_br(node: Any) -> bool:
    return isinstance(node.tag, str) and node.tag.lower() == "br"


def _has_blank_line(element: Any) -> bool:
    """Whether two `<br>` children follow each other with only whitespace between them."""
    previous_was_br = False
    for child in element:
        if _is_br(child):
            if previous_was_br:
                return True
            previous_was_br = not (child.tail and child.tail.strip())
        else:
            previous_was_br = False
    return False


def _wrap_runs(element: Any) -> None:
    # The content as a flat list: ("text", str) or ("node", element); tails become text items.
    pieces: list[tuple[str, Any]] = []
    if element.text:
        pieces.append(("text", element.text))
    children = list(element)
    for child in children:
        tail, child.tail = child.tail, None
        pieces.append(("node", child))
        if tail:
            pieces.append(("text", tail))
        element.remove(child)
    element.text = None

    run: list[tuple[str, Any]] = []

    def flush() -> None:
        has_text = any(
            (kind == "text" and value.strip())
            or (kind == "node" and not _is_br(value) and "".join(value.itertext()).strip())
            for kind, value in run
        )
        if has_text:
            paragraph = element.makeelement("p", {})
            last: Any = None
            for kind, value in run:
                if kind == "node":
                    paragraph.append(value)
                    last = value
                elif last is None:
                    paragraph.text = (paragraph.text or "") + value
                else:
                    last.tail = (last.tail or "") + value
            element.append(paragraph)
        else:  # nothing to read (an image in a link, stray breaks): kept, unwrapped
            for kind, value in run:
                if kind == "node" and not _is_br(value):
                    element.append(value)
        run.clear()

    index = 0
    while index < len(pieces):
        kind, value = pieces[index]
        if kind == "node" and _is_br(value):
            following = index + 1
            while following < len(pieces) and pieces[following][0] == "text":
                if pieces[following][1].strip():
                    break
                following += 1
            if (
                following < len(pieces)
                and pieces[following][0] == "node"
                and _is_br(pieces[following][1])
            ):  # a blank line: the paragraph ends
                flush()
                index = following + 1
                continue
            run.append((kind, value))
        elif kind == "node" and value.tag.lower() in BLOCK_TAGS:
            flush()
            element.append(value)
        else:
            run.append((kind, value))
        index += 1
    flush()


def block_text(element: Any) -> str:
    """The display text of an lxml element, with block boundaries kept as spaces.

    Does not modify the tree (unlike `separate_blocks`), skips script/style, and walks without
    recursion so that absurdly deep trees cannot exhaust the stack.
    """
    parts: list[str] = []
    # An explicit stack of (node, entering) instead of recursion; comments are children too.
    stack: list[tuple[Any, bool]] = [(element, True)]
    while stack:
        node, entering = stack.pop()
        tag = node.tag.lower() if isinstance(node.tag, str) else ""
        if entering and tag and tag not in _INVISIBLE_TAGS:
            if tag in BLOCK_TAGS:
                parts.append(" ")
            if node.text:
                parts.append(node.text)
            stack.append((node, False))
            stack.extend((child, True) for child in reversed(node))
            continue
        if not entering and tag in BLOCK_TAGS:
            parts.append(" ")
        if node is not element and node.tail:
            parts.append(node.tail)
    return clean_text("".join(parts))


def html_to_text(fragment: str) -> str:
    """Display text of an HTML fragment (a feed's title or summary), cleaned by `clean_text`.

    Tags, scripts, comments and entities go; block boundaries become spaces, so that
    "<p>one</p><p>two</p>" reads "one two", while inline markup ("wo<b>rd</b>") does not split
    words. Text without markup only has its entities decoded before it is cleaned.
    """
    if "<" not in fragment:
        return clean_text(html.unescape(fragment))
    try:
        root = parse_fragment(fragment)
    except (etree.ParserError, ValueError):
        return clean_text(html.unescape(fragment))
    return "" if root is None else block_text(root)


def parse_fragment(fragment: str) -> Any | None:
    """An HTML fragment as one lxml `<div>` holding it, or None when it is a whole document with
    no body ("<html><head>…</head></html>"), which holds no display text.

    Comments and processing instructions are left out: they are never text, and code that takes
    the text of an element's children would otherwise meet nodes that have none.
    lxml reads a fragment that starts like a document (`<html`, `<!doctype`) as one, and then fails
    an internal assertion (an IndexError under `python -O`) when that document has no body; that
    one failure is turned into None here. Its other errors (etree.ParserError, ValueError) are the
    caller's to handle.
    """
    # A parser per call, as extract does for pages: cheap, and never shared between threads.
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True)
    try:
        return lxml.html.fragment_fromstring(fragment, create_parent="div", parser=parser)
    except (AssertionError, IndexError):
        return None


def highlight_html(text: str, terms: Sequence[str]) -> str:
    """Escape ``text`` and wrap whole-word, case- and accent-insensitive hits of ``terms`` in <b>.

    Used for feed summaries and Telegram alerts ("why it matched"). The search runs on a
    one-to-one fold of each character, so positions found are positions in the original and the
    shown text keeps its own case and accents; terms are escaped literals (no user-controlled
    regex syntax), longest first so a phrase wins over its first word.
    """
    folded_terms = sorted({_fold_in_place(term.strip()) for term in terms if term.strip()}, key=len)
    if not folded_terms:
        return html.escape(text, quote=False)
    alternatives = "|".join(re.escape(term) for term in reversed(folded_terms))
    pattern = re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")
    parts: list[str] = []
    position = 0
    for match in pattern.finditer(_fold_in_place(text)):
        parts.append(html.escape(text[position : match.start()], quote=False))
        parts.append(f"<b>{html.escape(text[match.start() : match.end()], quote=False)}</b>")
        position = match.end()
    parts.append(html.escape(text[position:], quote=False))
    return "".join(parts)


def _fold_in_place(text: str) -> str:
    """Case- and accent-fold character by character, keeping the length (one char for one)."""
    folded = []
    for char in text:
        base = unicodedata.normalize("NFD", char)[0]
        lowered = base.lower()
        folded.append(lowered if len(lowered) == 1 else base)
    return "".join(folded)
