"""Compiled watchlists: Article → [Match], with the evidence for each.

Every watchlist is first compiled to a rule tree by feeds.query (term lists and queries give the
same tree). Then:

1. **One automaton.** Every spelling of every term of every watchlist goes into one Aho-Corasick
   automaton over the canonical text (feeds.normalize), keyed " jake sullivan " for whole words and
   " ukrain" for a prefix, so one pass per field finds every occurrence of every term at once,
   whatever the number of watchlists.
2. **A percolator.** Each rule is indexed under its *anchors*: spellings of which at least one must
   occur for the rule to be true (for an AND, the child with the fewest spellings; for an OR, all of
   its children's). An article only evaluates the rules anchored on something it contains, so a
   hundred thousand terms cost little more than a hundred. Rules that cannot be anchored (a lone
   /regex/) are evaluated for every article.
3. **The boolean stage** evaluates the candidate rules on the occurrences found: field scopes,
   case-sensitive spellings, proximity and regexes are checked here, only for the terms a rule asks
   about, and only when their cheaper siblings did not already decide.

Only cleaned article fields are matched (title, standfirst, body), never raw HTML.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from urllib.parse import urlsplit

import ahocorasick

from feeds.models import Article, Match, TermHit, Watchlist
from feeds.normalize import NormalizedText, normalize, strip_accents
from feeds.query import (
    And,
    Near,
    Node,
    Not,
    Or,
    Pattern,
    Regex,
    Site,
    Term,
    render,
    watchlist_tree,
)
from feeds.regex_terms import compile_regex

FIELDS = ("title", "standfirst", "body")
SNIPPET_CHARS = 240
TITLE, STANDFIRST, BODY = range(3)
FREEZE_FROM_WATCHLISTS = 1000
"""From this many watchlists a build moves its objects out of the collector's sight (see
_cyclic_gc_paused)."""
_IN_SCOPE = {"any": (TITLE, STANDFIRST, BODY), "title": (TITLE,), "body": (STANDFIRST, BODY)}


def compile_watchlist(watchlist: Watchlist) -> Node:
    """The rule tree of a watchlist; raises feeds.query.QueryError (a ValueError) if invalid."""
    return watchlist_tree(
        watchlist.keywords,
        watchlist.all_of,
        watchlist.exclude,
        watchlist.query,
        allow_regex=watchlist.allow_regex,
    )


@dataclass(frozen=True, slots=True)
class Occurrence:
    """Where a term occurred: a field and a [start, end) range of its canonical text (or, for a
    regex, of its original text)."""

    field: int
    start: int
    end: int
    in_original: bool = False


Check = Callable[["_Scan"], bool]
"""A rule tree, or part of one, compiled to a function of an article's scan."""


class _Rule:
    __slots__ = ("_positive", "check", "index", "tree", "watchlist")

    def __init__(self, index: int, watchlist: Watchlist, tree: Node) -> None:
        self.index = index
        self.watchlist = watchlist
        self.tree = tree
        self._positive: tuple[Term | Regex, ...] | None = None
        self.check: Check | None = None
        """The tree compiled by Matcher._compiled, on the rule's first evaluation."""

    @property
    def positive(self) -> tuple[Term | Regex, ...]:
        """The terms whose presence speaks for the rule (none under a NOT), in reading order;
        unique, and worked out only once the rule first matches."""
        if self._positive is None:
            self._positive = tuple(dict.fromkeys(_positive_items(self.tree)))
        return self._positive


class _Scan:
    """One article's normalised fields, the spellings the automaton found in it, and the
    occurrences of terms, worked out on demand."""

    __slots__ = ("article", "ids", "occurrences", "source", "texts")

    def __init__(
        self, article: Article, source: str | None, texts: tuple[NormalizedText, ...], ids: set[int]
    ) -> None:
        self.article = article
        self.source = source
        self.texts = texts
        self.ids = ids
        """Every pattern id hit anywhere in the article. Where exactly is asked only for the few
        terms a rule needs it for (scopes, case, proximity, evidence), by a C-level substring
        search of the canonical text: keeping every hit's position would cost more than that."""
        self.occurrences: dict[Term | Regex, list[Occurrence]] = {}


_second = itemgetter(1)


class Matcher:
    """All watchlists compiled once; match() is then one automaton pass per article field."""

    def __init__(self, watchlists: Sequence[Watchlist], *, percolate: bool = True) -> None:
        """Compile every watchlist; raises feeds.query.QueryError (a ValueError) for a bad one.

        `percolate=False` evaluates every rule for every article: the reference that tests and
        the benchmark compare the percolator against.
        """
        self._watchlists = tuple(watchlists)
        self._automaton = ahocorasick.Automaton()
        self._pattern_ids: dict[str, int] = {}
        """Automaton key (" jake sullivan ", or " ukrain" for a prefix) → pattern id."""
        self._rules: list[_Rule] = []
        self._by_anchor: dict[int, list[int]] = {}
        self._term_ids: dict[int, tuple[frozenset[int], bool]] = {}
        """id() of each Term of the trees (which the matcher keeps alive) → its pattern ids, and
        whether any hit of them counts (no scope, no case-sensitive spelling)."""
        self._always: list[int] = []
        with _cyclic_gc_paused(freeze=len(self._watchlists) >= FREEZE_FROM_WATCHLISTS):
            for index, watchlist in enumerate(self._watchlists):
                tree = compile_watchlist(watchlist)
                rule = _Rule(index, watchlist, tree)
                self._rules.append(rule)
                anchors = self._anchors(tree)
                if anchors is None or not percolate:
                    self._always.append(index)
                else:
                    for pattern_id in anchors:
                        self._by_anchor.setdefault(pattern_id, []).append(index)
        self._anchor_ids = frozenset(self._by_anchor)
        if self._pattern_ids:
            self._automaton.make_automaton()

    @property
    def watchlists(self) -> tuple[Watchlist, ...]:
        return self._watchlists

    @property
    def pattern_count(self) -> int:
        """Distinct spellings in the automaton (for benchmarks and logs)."""
        return len(self._pattern_ids)

    def tree(self, watchlist: str) -> Node:
        return self._rule(watchlist).tree

    def match(self, article: Article, source: str | None = None) -> list[Match]:
        """The watchlists this article matches, in configuration order.

        `source` is the name of the source the article came from: a watchlist limited to some
        sources never matches articles from the others.
        """
        scan = self._scan(article, source)
        candidates = set(self._always)
        by_anchor = self._by_anchor
        for pattern_id in self._anchor_ids.intersection(scan.ids):
            candidates.update(by_anchor[pattern_id])
        matches = []
        for index in sorted(candidates):
            rule = self._rules[index]
            check = rule.check
            if check is None:
                check = rule.check = self._compiled(rule.tree)
            if self._filters_fail(rule, scan) is None and check(scan):
                match = self._decide(rule, scan)
                if match is not None:
                    matches.append(match)
        return matches

    def explain(self, article: Article, watchlist: str, source: str | None = None) -> list[str]:
        """Why an article matches a watchlist or not, as lines of text (for `match --explain`)."""
        rule = self._rule(watchlist)
        scan = self._scan(article, source)
        lines = [f"rule: {render(rule.tree)}"]
        lines.extend(self._explain_node(rule.tree, scan, depth=1))
        failed = self._filters_fail(rule, scan)
        verdict = self._evaluate(rule.tree, scan)
        if failed is None and verdict:
            failed = self._mentions_fail(rule, scan)
        if failed is not None:
            lines.append(f"filter: {failed}")
        matched = failed is None and verdict
        head = "MATCHES" if matched else "does not match"
        return [f"watchlist {watchlist}: {head}", *lines]

    # compiling

    def _rule(self, name: str) -> _Rule:
        for rule in self._rules:
            if rule.watchlist.name == name:
                return rule
        known = ", ".join(rule.watchlist.name for rule in self._rules)
        raise KeyError(f'no watchlist "{name}" (watchlists: {known})')

    def _pattern_id(self, pattern: Pattern) -> int:
        key = _key(pattern)
        found = self._pattern_ids.get(key)
        if found is None:
            found = self._pattern_ids[key] = len(self._pattern_ids)
            self._automaton.add_word(key, found)
        return found

    def _anchors(self, node: Node) -> frozenset[int] | None:
        """Spellings of which one must occur for `node` to be true; None if there is no such set."""
        if isinstance(node, Term):
            if len(node.patterns) == 1:
                ids = frozenset((self._pattern_id(node.patterns[0]),))
                anywhere = node.scope == "any" and node.patterns[0].exact is None
            else:
                ids = frozenset(self._pattern_id(pattern) for pattern in node.patterns)
                anywhere = node.scope == "any" and all(p.exact is None for p in node.patterns)
            self._term_ids[id(node)] = (ids, anywhere)
            return ids
        if isinstance(node, Near):
            self._anchors(node.right)
            return self._anchors(node.left)
        if isinstance(node, Or):
            union: set[int] = set()
            every = [self._anchors(child) for child in node.children]
            for anchors in every:
                if anchors is None:
                    return None
                union |= anchors
            return frozenset(union)
        if isinstance(node, And):
            options = [a for a in (self._anchors(child) for child in node.children) if a]
            return min(options, key=len) if options else None
        if isinstance(node, Not):
            self._anchors(node.child)  # its spellings still have to be found
        return None

    # matching

    def _scan(self, article: Article, source: str | None) -> _Scan:
        texts = (
            normalize(article.title),
            normalize(article.standfirst or ""),
            normalize(article.text),
        )
        ids: set[int] = set()
        if self._pattern_ids:
            scan = self._automaton.iter
            for text in texts:
                ids.update(map(_second, scan(text.canonical)))
        return _Scan(article, source, texts, ids)

    def _filters_fail(self, rule: _Rule, scan: _Scan) -> str | None:
        """Why the source or language filters exclude the article, or None if they let it in."""
        watchlist = rule.watchlist
        if watchlist.sources and scan.source not in watchlist.sources:
            return f"source {scan.source!r} is not one of {', '.join(watchlist.sources)}"
        language = (scan.article.language or "").split("-")[0].lower()
        if watchlist.languages and language and language not in watchlist.languages:
            return f"language {language!r} is not one of {', '.join(watchlist.languages)}"
        return None

    def _mentions_fail(self, rule: _Rule, scan: _Scan) -> str | None:
        """A passing mention is not enough when the watchlist sets min_mentions (title hits are)."""
        needed = rule.watchlist.min_mentions
        if needed <= 0:
            return None
        found = [o for item in rule.positive for o in self._occurrences(item, scan)]
        if any(occurrence.field == TITLE for occurrence in found):
            return None
        mentions = len(found)
        if mentions >= needed:
            return None
        return f"{mentions} mention(s) in the standfirst and body, min_mentions is {needed}"

    def _decide(self, rule: _Rule, scan: _Scan) -> Match | None:
        if self._mentions_fail(rule, scan) is not None:
            return None
        hits = []
        first: list[Occurrence] = []
        for item in rule.positive:
            found = self._occurrences(item, scan)
            if not found:
                continue
            fields = tuple(FIELDS[f] for f in sorted({o.field for o in found}))
            hits.append(TermHit(item.label, len(found), fields))
            first.append(min(found, key=_snippet_preference))
        return Match(rule.watchlist.name, tuple(hits), self._snippet(first, scan))

    def _evaluate(self, node: Node, scan: _Scan) -> bool:
        if isinstance(node, Term):
            # Most terms are decided by a set lookup: was any of its spellings hit at all? Only
            # a term with a scope or a case-sensitive spelling must then look at where.
            ids, anywhere = self._term_ids[id(node)]
            if ids.isdisjoint(scan.ids):
                return False
            return anywhere or bool(self._occurrences(node, scan))
        if isinstance(node, Regex):
            return bool(self._occurrences(node, scan))
        if isinstance(node, And):
            # Plain terms first: a set lookup each, and the likeliest to say no.
            terms = [child for child in node.children if isinstance(child, Term)]
            if not all(self._evaluate(term, scan) for term in terms):
                return False
            rest = (child for child in node.children if not isinstance(child, Term))
            return all(self._evaluate(child, scan) for child in rest)
        if isinstance(node, Or):
            return any(self._evaluate(child, scan) for child in node.children)
        if isinstance(node, Not):
            return not self._evaluate(node.child, scan)
        if isinstance(node, Near):
            return self._near(node, scan) is not None
        if isinstance(node, Site):
            host = (urlsplit(scan.article.url).hostname or "").lower()
            return host == node.domain or host.endswith("." + node.domain)
        return scan.source == node.name

    def _compiled(self, node: Node) -> Check:
        """`node` as a function of a scan that gives what _evaluate gives, with less work.

        _evaluate walks the tree and asks what each node is at every step; an article's candidate
        rules cost more that way than normalising it (bench/match). Compiled, a plain term (no
        scope, no case-sensitive spelling) is one set test, an OR of plain terms is one test of
        the union of their spellings, and the rest are closures over their compiled children,
        in _evaluate's order. Anything else (scopes, case, proximity, regexes, site and source)
        is left to _evaluate itself. A property test compares the two on random rules. Compiled
        lazily, so a build pays nothing for rules no article ever brings up.
        """
        if isinstance(node, Term):
            ids, anywhere = self._term_ids[id(node)]
            if anywhere:
                return _hit_any_of(ids)
        elif isinstance(node, Or):
            if all(self._plain(child) for child in node.children):
                union = frozenset().union(*(self._term_ids[id(c)][0] for c in node.children))
                return _hit_any_of(union)
            any_checks = tuple(self._compiled(child) for child in node.children)
            return lambda scan: any(check(scan) for check in any_checks)
        elif isinstance(node, And):
            terms = [child for child in node.children if isinstance(child, Term)]
            rest = [child for child in node.children if not isinstance(child, Term)]
            all_checks = tuple(self._compiled(child) for child in terms + rest)
            return lambda scan: all(check(scan) for check in all_checks)
        elif isinstance(node, Not):
            child_check = self._compiled(node.child)
            return lambda scan: not child_check(scan)
        evaluate = self._evaluate
        return lambda scan: evaluate(node, scan)

    def _plain(self, node: Node) -> bool:
        """A term that occurs if any of its spellings was hit anywhere."""
        return isinstance(node, Term) and self._term_ids[id(node)][1]

    def _occurrences(self, item: Term | Regex, scan: _Scan) -> list[Occurrence]:
        cached = scan.occurrences.get(item)
        if cached is not None:
            return cached
        fields = _IN_SCOPE[item.scope]
        found: list[Occurrence] = []
        if isinstance(item, Regex):
            spans = compile_regex(item.pattern)
            for field in fields:
                found.extend(
                    Occurrence(field, start, end, in_original=True)
                    for start, end in spans(scan.texts[field].original)
                )
        else:
            for pattern in item.patterns:
                pattern_id = self._pattern_ids[_key(pattern)]
                if pattern_id in scan.ids:
                    found.extend(_pattern_occurrences(pattern, fields, scan))
            if len(item.patterns) > 1:
                found = sorted(set(found), key=_reading_order)
        scan.occurrences[item] = found
        return found

    def _near(self, node: Near, scan: _Scan) -> int | None:
        """The fewest words between an occurrence of each side, if within the distance."""
        best: int | None = None
        right = self._occurrences(node.right, scan)
        for left in self._occurrences(node.left, scan):
            text = scan.texts[left.field]
            left_words = (text.word_index(left.start), text.word_index(left.end - 1))
            for other in right:
                if other.field != left.field or other == left:
                    continue
                other_words = (text.word_index(other.start), text.word_index(other.end - 1))
                gap = max(other_words[0] - left_words[1], left_words[0] - other_words[1], 1) - 1
                if gap <= node.distance and (best is None or gap < best):
                    best = gap
        return best

    def _snippet(self, first: Sequence[Occurrence], scan: _Scan) -> str:
        """Display text around the earliest hit, preferring the body, cut at word boundaries."""
        if not first:
            return ""
        best = min(first, key=_snippet_preference)
        text = scan.texts[best.field]
        if best.in_original:
            start, end = best.start, best.end
        else:
            start, end = text.original_span(best.start, best.end)
        return window(text.original, start, end, SNIPPET_CHARS)

    def _explain_node(self, node: Node, scan: _Scan, depth: int) -> Iterator[str]:
        indent = "  " * depth
        mark = "✓" if self._evaluate(node, scan) else "✗"
        if isinstance(node, Term | Regex):
            found = self._occurrences(node, scan)
            where = ", ".join(FIELDS[f] for f in sorted({o.field for o in found}))
            detail = f"found {len(found)}× in {where}" if found else "not found"
            yield f"{indent}{mark} {render(node)}: {detail}"
        elif isinstance(node, And | Or):
            yield f"{indent}{mark} {'all of' if isinstance(node, And) else 'any of'}:"
            for child in node.children:
                yield from self._explain_node(child, scan, depth + 1)
        elif isinstance(node, Not):
            yield f"{indent}{mark} none of:"
            yield from self._explain_node(node.child, scan, depth + 1)
        elif isinstance(node, Near):
            gap = self._near(node, scan)
            detail = f"{gap} word(s) apart" if gap is not None else "not close enough"
            yield f"{indent}{mark} {render(node)}: {detail}"
            yield from self._explain_node(node.left, scan, depth + 1)
            yield from self._explain_node(node.right, scan, depth + 1)
        else:
            yield f"{indent}{mark} {render(node)}"


def _hit_any_of(ids: frozenset[int]) -> Check:
    return lambda scan: not ids.isdisjoint(scan.ids)


def _pattern_occurrences(
    pattern: Pattern, fields: Sequence[int], scan: _Scan
) -> Iterator[Occurrence]:
    """Every occurrence of one spelling in the fields in scope, checked for case."""
    key = _key(pattern)
    for field in fields:
        text = scan.texts[field]
        canonical = text.canonical
        position = canonical.find(key)
        while position != -1:
            start = position + 1
            if pattern.prefix:
                stop = canonical.find(" ", position + len(key))
            else:
                stop = position + len(key) - 1
            if pattern.exact is None or _same_case(pattern, text, start, stop):
                yield Occurrence(field, start, stop)
            position = canonical.find(key, position + 1)


def _key(pattern: Pattern) -> str:
    """The automaton key: the words padded with spaces, so only whole words are found; a prefix
    is left open at the end."""
    return f" {pattern.words}" if pattern.prefix else f" {pattern.words} "


def _same_case(pattern: Pattern, text: NormalizedText, start: int, stop: int) -> bool:
    """Does the original text, accents aside, spell the hit exactly as the term does?"""
    assert pattern.exact is not None
    words = text.original_words(text.word_index(start), text.word_index(stop - 1))
    written = " ".join(strip_accents(word) for word in words)
    return written.startswith(pattern.exact) if pattern.prefix else written == pattern.exact


def _reading_order(occurrence: Occurrence) -> tuple[int, int]:
    return occurrence.field, occurrence.start


def _snippet_preference(occurrence: Occurrence) -> tuple[bool, int, int]:
    """The body shows context best; then the earliest field and place."""
    return occurrence.field != BODY, occurrence.field, occurrence.start


def _positive_items(node: Node) -> Iterator[Term | Regex]:
    if isinstance(node, Term | Regex):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _positive_items(child)
    elif isinstance(node, Near):
        yield node.left
        yield node.right


@contextmanager
def _cyclic_gc_paused(*, freeze: bool = False) -> Iterator[None]:
    """Pause the cyclic garbage collector while compiling watchlists.

    A build creates hundreds of thousands of small objects that all stay alive (terms, patterns,
    rule trees), and every few hundred allocations the collector would walk the young ones, and
    more and more often the old ones: 40% of the build time at 100,000 terms (bench/match). None
    of these objects forms a cycle, so there is nothing to collect; reference counting still frees
    everything else. The previous state is restored even if a definition is invalid.

    Pausing alone only postpones the cost: the first collection after the build still walks every
    new object once (half a second at 100,000 terms). With `freeze`, for large builds, the
    collector first clears the garbage cycles made so far (cheap: the build has not started), and
    after a successful build `gc.freeze()` moves every surviving object to the permanent
    generation, which the collector never walks. Frozen objects are still freed by reference
    counting when the matcher is replaced, so nothing leaks that a collection would have freed:
    the build makes no cycles, and the garbage before it was just collected. Small builds (tests,
    a handful of watchlists) skip both steps, whose fixed cost would outweigh the gain.
    """
    was_enabled = gc.isenabled()
    if freeze and was_enabled:
        gc.collect()
    gc.disable()
    built = False
    try:
        yield
        built = True
    finally:
        if built and freeze and was_enabled:
            gc.freeze()
        if was_enabled:
            gc.enable()


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
