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
   about, and only when their cheaper siblings did not already decide. Most rules never walk
   their tree: at build time they are flattened into sets of pattern ids of which each must, or
   none may, have been hit (Matcher._plan), a few C-level set tests per article.

Only cleaned article fields are matched (title, standfirst, body), never raw HTML.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import NamedTuple
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


class Occurrence(NamedTuple):
    """Where a term occurred: a field and a [start, end) range of its canonical text (or, for a
    regex, of its original text). A named tuple: evidence makes one per mention, and a tuple is
    several times cheaper to create than a frozen dataclass."""

    field: int
    start: int
    end: int
    in_original: bool = False


Plan = tuple[tuple[frozenset[int], ...], tuple[frozenset[int], ...], tuple[Node, ...]]
"""A rule tree flattened for the boolean stage: pattern-id sets of which each must be hit, sets of
which none may be hit, and the remaining subtrees (evaluated by Matcher._evaluate)."""


class _Rule:
    __slots__ = ("_positive", "index", "plan", "tree", "watchlist")

    def __init__(self, index: int, watchlist: Watchlist, tree: Node, plan: Plan) -> None:
        self.index = index
        self.watchlist = watchlist
        self.tree = tree
        self.plan = plan
        self._positive: tuple[Term | Regex, ...] | None = None

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
        # Pattern ids kept as C integers, not objects: hits need no visit to an int object
        # scattered in memory (6 µs an article at 100,000 terms, bench/match).
        self._automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
        self._pattern_ids: dict[str, int] = {}
        """Automaton key (" jake sullivan ", or " ukrain" for a prefix) → pattern id."""
        self._rules: list[_Rule] = []
        by_anchor: dict[int, list[int]] = {}
        self._term_ids: dict[int, tuple[frozenset[int], bool]] = {}
        """id() of each Term of the trees (which the matcher keeps alive) → its pattern ids, and
        whether any hit of them counts (no scope, no case-sensitive spelling)."""
        self._always: list[int] = []
        with _cyclic_gc_paused(freeze=len(self._watchlists) >= FREEZE_FROM_WATCHLISTS):
            for index, watchlist in enumerate(self._watchlists):
                tree = compile_watchlist(watchlist)
                anchors, plain = self._anchors(tree)
                self._rules.append(_Rule(index, watchlist, tree, self._plan(tree, plain)))
                if anchors is None or not percolate:
                    self._always.append(index)
                else:
                    for pattern_id in anchors:
                        by_anchor.setdefault(pattern_id, []).append(index)
        self._rules_by_pattern: list[tuple[int, ...]] = [()] * len(self._pattern_ids)
        """Pattern id → the rules anchored on it: a list, so a hit costs one array read (a set
        of anchor ids and a dict cost two hashed lookups in tables too big for the CPU cache)."""
        for pattern_id, indexes in by_anchor.items():
            self._rules_by_pattern[pattern_id] = tuple(indexes)
        if self._pattern_ids:
            # All keys at once, after the rules: added while compiling, the automaton's nodes
            # would be scattered among the rule objects in memory, and every article's pass
            # slower for it (15%, bench/match).
            add_word = self._automaton.add_word
            for key, pattern_id in self._pattern_ids.items():
                add_word(key, pattern_id)
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
        # Every rule anchored on a spelling the article holds, gathered by C-level calls alone.
        candidates = set(self._always).union(*map(self._rules_by_pattern.__getitem__, scan.ids))
        matches = []
        for index in sorted(candidates):
            rule = self._rules[index]
            if self._filters_fail(rule, scan) is None and self._holds(rule.plan, scan):
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
        return found

    def _anchors(self, node: Node) -> tuple[frozenset[int] | None, frozenset[int] | None]:
        """Spellings of which one must occur for `node` to be true (None if there is no such
        set); and, if `node` is true exactly when one of a set of spellings was hit anywhere (a
        plain term, or an OR of them), that set, else None."""
        if isinstance(node, Term):
            if len(node.patterns) == 1:
                ids = frozenset((self._pattern_id(node.patterns[0]),))
                anywhere = node.scope == "any" and node.patterns[0].exact is None
            else:
                ids = frozenset(self._pattern_id(pattern) for pattern in node.patterns)
                anywhere = node.scope == "any" and all(p.exact is None for p in node.patterns)
            self._term_ids[id(node)] = (ids, anywhere)
            return ids, ids if anywhere else None
        if isinstance(node, Near):
            self._anchors(node.right)
            return self._anchors(node.left)[0], None
        if isinstance(node, Or):
            union: set[int] = set()
            plain = True
            anchored = True
            for child in node.children:
                anchors, child_plain = self._anchors(child)
                plain = plain and child_plain is not None
                if anchors is None:
                    anchored = False
                elif anchored:
                    union |= anchors
            if not anchored:
                return None, None
            frozen = frozenset(union)
            return frozen, frozen if plain else None
        if isinstance(node, And):
            options = [a for a in (self._anchors(child)[0] for child in node.children) if a]
            return (min(options, key=len) if options else None), None
        if isinstance(node, Not):
            self._anchors(node.child)  # its spellings still have to be found
        return None, None

    def _plan(self, tree: Node, plain: frozenset[int] | None) -> Plan:
        """The tree flattened so that most rules are decided by set tests alone (see _holds).

        Walking the tree node by node, asking what each node is, cost an article's candidate
        rules more than normalising it (bench/match). The usual rule (keywords, `all` terms,
        exclusions: an AND of plain terms, ORs of them and NOTs of those) becomes a few sets of
        pattern ids; anything else (scopes, case, proximity, regexes, site, source) stays a
        subtree for _evaluate. A property test checks that _holds and _evaluate always agree.
        """
        if plain is not None:
            return (plain,), (), ()
        if not isinstance(tree, And):
            return (), (), (tree,)
        required: list[frozenset[int]] = []
        forbidden: list[frozenset[int]] = []
        rest: list[Node] = []
        for child in tree.children:
            if isinstance(child, Not):
                child_plain = self._plain_ids(child.child)
                if child_plain is not None:
                    forbidden.append(child_plain)
                    continue
            else:
                child_plain = self._plain_ids(child)
                if child_plain is not None:
                    required.append(child_plain)
                    continue
            rest.append(child)
        return tuple(required), tuple(forbidden), tuple(rest)

    def _plain_ids(self, node: Node) -> frozenset[int] | None:
        """The spellings whose hit anywhere makes `node` true, if that alone decides it (a plain
        term, or an OR of plain terms); else None. Uses the ids _anchors recorded."""
        if isinstance(node, Term):
            ids, anywhere = self._term_ids[id(node)]
            return ids if anywhere else None
        if isinstance(node, Or):
            union: set[int] = set()
            for child in node.children:
                child_ids = self._plain_ids(child)
                if child_ids is None:
                    return None
                union |= child_ids
            return frozenset(union)
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

    def _holds(self, plan: Plan, scan: _Scan) -> bool:
        """Is a rule true for the scan? The same answer as _evaluate on its tree (see _plan)."""
        required, forbidden, rest = plan
        ids = scan.ids
        for spellings in required:
            if spellings.isdisjoint(ids):
                return False
        for spellings in forbidden:
            if not spellings.isdisjoint(ids):
                return False
        return all(self._evaluate(node, scan) for node in rest)

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
