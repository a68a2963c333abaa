"""Compiled watchlists: Article → [Match], with the evidence for each.

Every term of every watchlist goes into one Aho-Corasick automaton keyed on its canonical form
padded with spaces (" jake sullivan "), so one pass over an article's canonical text finds every
whole-word occurrence of every term at once, whatever the number of watchlists. The boolean stage
then reads, per watchlist, only the term counts that pass produced.

Only cleaned article fields are matched (title, standfirst, body), never raw HTML.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import ahocorasick

from feeds.models import Article, Match, TermHit, Watchlist
from feeds.normalize import NormalizedText, normalize, normalize_term

FIELDS = ("title", "standfirst", "body")
SNIPPET_CHARS = 240


@dataclass(frozen=True, slots=True)
class _FirstHit:
    field: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class _Scan:
    """Every term occurrence in one article: counts per (term, field) and the first place seen."""

    counts: dict[str, Counter[str]]
    first: dict[tuple[str, str], _FirstHit]
    """(canonical term, field) → the first occurrence of the term in that field."""
    texts: dict[str, NormalizedText]


class Matcher:
    """All watchlists compiled once; match() is then one automaton pass per article field."""

    def __init__(self, watchlists: Sequence[Watchlist]) -> None:
        self._watchlists = tuple(watchlists)
        self._automaton = ahocorasick.Automaton()
        self._canonical: dict[str, str] = {}
        for term in _all_terms(self._watchlists):
            canonical = normalize_term(term)
            if not canonical:
                raise ValueError(f"term {term!r} has no letters or digits to match")
            self._canonical[term] = canonical
            self._automaton.add_word(f" {canonical} ", canonical)
        if self._canonical:
            self._automaton.make_automaton()

    @property
    def watchlists(self) -> tuple[Watchlist, ...]:
        return self._watchlists

    def match(self, article: Article, source: str | None = None) -> list[Match]:
        """The watchlists this article matches, in configuration order.

        `source` is the name of the source the article came from: a watchlist limited to some
        sources never matches articles from the others.
        """
        scan = self._scan(article)
        matches = []
        for watchlist in self._watchlists:
            if watchlist.sources and source not in watchlist.sources:
                continue
            match = self._decide(watchlist, scan)
            if match is not None:
                matches.append(match)
        return matches

    def _scan(self, article: Article) -> _Scan:
        texts = {
            "title": normalize(article.title),
            "standfirst": normalize(article.standfirst or ""),
            "body": normalize(article.text),
        }
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        first: dict[tuple[str, str], _FirstHit] = {}
        if not self._canonical:
            return _Scan(counts, first, texts)
        for field_name in FIELDS:
            text = texts[field_name]
            for end, canonical in self._automaton.iter(text.canonical):
                counts[canonical][field_name] += 1
                # iter() reports the index of the last character of the padded key.
                first.setdefault(
                    (canonical, field_name), _FirstHit(field_name, end - len(canonical), end)
                )
        return _Scan(counts, first, texts)

    def _decide(self, watchlist: Watchlist, scan: _Scan) -> Match | None:
        def found(term: str) -> bool:
            return bool(scan.counts.get(self._canonical[term]))

        if any(found(term) for term in watchlist.exclude):
            return None
        if not all(found(term) for term in watchlist.all_of):
            return None
        hit_terms = [t for t in (*watchlist.keywords, *watchlist.all_of) if found(t)]
        if not any(found(term) for term in watchlist.keywords):
            return None
        hits = tuple(self._evidence(term, scan) for term in dict.fromkeys(hit_terms))
        return Match(watchlist.name, hits, self._snippet(hit_terms, scan))

    def _evidence(self, term: str, scan: _Scan) -> TermHit:
        per_field = scan.counts[self._canonical[term]]
        fields = tuple(f for f in FIELDS if per_field[f])
        return TermHit(term, sum(per_field.values()), fields)

    def _snippet(self, terms: Iterable[str], scan: _Scan) -> str:
        """Display text around the earliest hit, preferring the body, cut at word boundaries."""
        canonical_terms = {self._canonical[t] for t in terms}
        hits = [hit for (term, _), hit in scan.first.items() if term in canonical_terms]
        best = min(hits, key=lambda h: (h.field != "body", FIELDS.index(h.field), h.start))
        text = scan.texts[best.field]
        start, end = text.original_span(best.start, best.end)
        return window(text.original, start, end, SNIPPET_CHARS)


def window(text: str, start: int, end: int, size: int) -> str:
    """About `size` characters of `text` around [start, end), cut at spaces, with ellipses."""
    spare = max(0, size - (end - start))
    left = max(0, start - spare // 3)
    right = min(len(text), end + spare - (start - left))
    # Shrink to whole words so a snippet never starts or ends inside one.
    if left > 0 and not text[left - 1].isspace():
        space = text.find(" ", left, start)
        left = space + 1 if space != -1 else start
    if right < len(text) and not text[right].isspace():
        space = text.rfind(" ", end, right)
        right = space if space != -1 else end
    snippet = " ".join(text[left:right].split())
    return ("…" if left > 0 else "") + snippet + ("…" if right < len(text) else "")


def _all_terms(watchlists: Iterable[Watchlist]) -> list[str]:
    terms: dict[str, None] = {}
    for watchlist in watchlists:
        for term in (*watchlist.keywords, *watchlist.all_of, *watchlist.exclude):
            terms[term] = None
    return list(terms)
