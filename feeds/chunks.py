"""Find the rest of an article that the content engine cut short: sibling chunks of its body,
and quotation blocks (embedded posts) between its paragraphs.

Many sites split one article body into several sibling containers (a "chunk" per few paragraphs,
with an advert slot between them). trafilatura scores containers one by one and keeps the best,
so such an article loses every chunk after the first. The remedy is the one readability uses for
siblings, made stricter: locate the container that holds the text trafilatura kept, walk up a few
levels, and at each level take the siblings that are built the same way (same tag, same class)
and read as prose (long, sentence-like, few links). Nothing here knows any site: the signal is
the page's own repetition of its body's structure.

No library does this step: readability-lxml merges siblings only around its own choice of
container, and running it as a second engine costs more than our whole speed budget.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from feeds.text import clean_text, fold_for_comparison

MAX_LEVELS = 4
"""How far above the paragraphs' container to look for repeated siblings: chunked bodies put the
repetition one to three wrappers up; higher, siblings are page sections."""

MIN_PARAGRAPH_CHARS = 80
"""A paragraph of a sibling chunk is taken only when it is this long (prose, not a caption)."""

MIN_CHUNK_CHARS = 300
"""A sibling chunk is taken only when its prose paragraphs add up to this much text."""

MIN_CHUNK_PARAGRAPHS = 2
"""...and number at least this many: a teaser card (one blurb under a headline) repeats the same
structure as its neighbours too, but a body chunk holds several paragraphs."""

MAX_LINK_DENSITY = 0.35
"""Share of a paragraph's characters inside links above which it is navigation, not prose."""

_PROSE_TAGS = ("p", "blockquote", "h2", "h3", "h4", "ul", "ol")
_SENTENCE_END = (".", "!", "?", "…", '"', "”", "’", "»", ")", ":")


MIN_QUOTE_CHARS = 40
"""A quotation block inside the body is taken back when it holds at least this much text."""


@dataclass(frozen=True, slots=True)
class Continuations:
    """Prose elements found in sibling chunks, before and after the body that was kept, and
    quotation blocks inside the body's container that the content engine dropped."""

    before: tuple[Any, ...]
    after: tuple[Any, ...]
    quotes: tuple[tuple[str | None, Any], ...] = ()
    """(the folded text of the kept paragraph it follows, or None at the start; the element)."""


def block_text(element: Any) -> str:
    """Display text of an element of a tree that `feeds.text.separate_blocks` has already spaced
    and that holds no scripts (pruned): plain text joining is then exact, and runs in C."""
    return clean_text("".join(element.itertext()))


def _signature(element: Any) -> tuple[str, str]:
    return (str(element.tag), " ".join(sorted((element.get("class") or "").split())))


def _link_density(element: Any, text_length: int) -> float:
    linked = sum(len(block_text(link)) for link in element.iter("a"))
    return linked / text_length if text_length else 1.0


def _is_prose(element: Any) -> bool:
    text = block_text(element)
    if element.tag in {"h2", "h3", "h4"}:
        return False  # a heading alone proves nothing; it is kept only between prose (below)
    if len(text) < MIN_PARAGRAPH_CHARS or not text.endswith(_SENTENCE_END):
        return False
    if any(ancestor.tag == "a" for ancestor in element.iterancestors()):
        return False  # a blurb inside a link is a teaser card
    return _link_density(element, len(text)) <= MAX_LINK_DENSITY


def _prose_elements(chunk: Any) -> list[Any]:
    """The prose paragraphs of a chunk in document order (outermost only: a `p` in a quoted
    block is taken with its block)."""
    found: list[Any] = []
    for element in chunk.iter(*_PROSE_TAGS):
        if any(element in set(parent.iter()) for parent in found[-1:]):
            continue
        if element.tag in {"ul", "ol"}:
            continue  # lists in chunks are mostly link lists; the content engine keeps real ones
        if _is_prose(element):
            found.append(element)
    return found


def find_continuations(root: Any, kept_texts: list[str]) -> Continuations:
    """Sibling chunks of the body whose text is `kept_texts`, as lists of prose elements.

    `root` is the (pruned) page tree, `kept_texts` the paragraphs the content engine kept. Returns
    nothing when the kept text cannot be located in the tree or no sibling qualifies.
    """
    wanted = {fold_for_comparison(text) for text in kept_texts if len(text) >= MIN_PARAGRAPH_CHARS}
    if not wanted:
        return Continuations((), ())
    parents: Counter[Any] = Counter()
    for element in root.iter("p"):
        text = block_text(element)
        if len(text) >= MIN_PARAGRAPH_CHARS and fold_for_comparison(text) in wanted:
            parents[element.getparent()] += 1
    if not parents:
        return Continuations((), ())
    container, _ = parents.most_common(1)[0]
    kept_elements = set(container.iter())
    quotes: tuple[tuple[str | None, Any], ...] = ()
    if container.find(".//blockquote") is not None:
        quotes = _missed_quotes(container, {fold_for_comparison(text) for text in kept_texts})

    before: list[Any] = []
    after: list[Any] = []
    kept: set[str] | None = None  # folded on first need: most pages have no sibling chunk
    node = container
    for _ in range(MAX_LEVELS):
        parent = node.getparent()
        if parent is None:
            break
        signature = _signature(node)
        if signature[1]:  # an unclassed wrapper repeated is too weak a signal on its own level
            seen_self = False
            for sibling in parent:
                if sibling is node:
                    seen_self = True
                    continue
                if not isinstance(sibling.tag, str) or _signature(sibling) != signature:
                    continue
                if kept is None:
                    kept = {fold_for_comparison(text) for text in kept_texts}
                prose = [
                    element
                    for element in _prose_elements(sibling)
                    if element not in kept_elements
                    and fold_for_comparison(block_text(element)) not in kept
                ]
                if (
                    len(prose) < MIN_CHUNK_PARAGRAPHS
                    or sum(len(block_text(e)) for e in prose) < MIN_CHUNK_CHARS
                ):
                    continue
                (after if seen_self else before).extend(prose)
        if before or after:
            break
        node = parent
    return Continuations(tuple(before), tuple(after), quotes)


def _missed_quotes(container: Any, kept: set[str]) -> tuple[tuple[str | None, Any], ...]:
    """Quotation blocks among the body's paragraphs that did not come through, each with the
    kept paragraph it follows.

    Embedded posts (a tweet quoted in the story) are `blockquote`s between the paragraphs; content
    engines drop them as "social" widgets, but what they quote is part of the story as written,
    and often what a watchlist is after. Mostly-link blocks stay out.
    """
    found: list[tuple[str | None, Any]] = []
    anchor: str | None = None
    inside: set[Any] = set()
    for element in container.iter("p", "blockquote"):
        if element in inside:
            continue
        folded = fold_for_comparison(block_text(element))
        if element.tag == "p":
            if folded in kept:
                anchor = folded
            continue
        inside.update(element.iter())
        text = block_text(element)
        already = folded in kept or any(
            fold_for_comparison(block_text(paragraph)) in kept for paragraph in element.iter("p")
        )
        if already or len(text) < MIN_QUOTE_CHARS or _link_density(element, len(text)) > 0.5:
            continue
        found.append((anchor, element))
    return tuple(found)
