"""The watch language: a watchlist's definition → one rule tree the matcher evaluates.

Two ways to write a watchlist reach the same tree:

- term lists: ``keywords`` (any of), ``all`` (each required), ``exclude`` (none of), each item in
  the *term syntax* below;
- ``query``: one string in the style of Google Alerts::

      Ukraine AND (troops OR invasion) -football
      intitle:"Jake Sullivan" OR (Kyiv | Kiev | Київ) AROUND(5) drone* site:bbc.co.uk

Term syntax (one term, as in a YAML list item or between operators in a query):

- words or a "quoted phrase": whole words, case- and accent-insensitive;
- ``Kyiv | Kiev | Київ``: an alias group, one term with several spellings (its mentions add up);
- ``Ukrain*``: the last word is a prefix (at least three letters before the star);
- ``=US``: case-sensitive ("US" but never "us"), still accent-insensitive.

Query operators, loosest first: ``OR``; implicit AND (or ``AND``); ``-term`` / ``NOT term``;
``AROUND(n)`` / ``NEAR/n`` (at most n words apart; ``NEAR`` alone is 10); ``|`` (alias group).
Field scopes ``intitle:`` and ``inbody:`` apply to a term or a parenthesised group; ``site:`` (the
article's host or a subdomain) and ``source:`` (a source name) filter on where it came from.
``/regex/`` is a regular expression (RE2, linear time) and only allowed where the watchlist
enables it.

Errors are :class:`QueryError` with the 0-based offset into the text, so the settings loader can
point at the line and column of the mistake in the YAML file.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple

from feeds.normalize import normalize_term, split_words, strip_accents

Scope = Literal["any", "title", "body"]

MIN_PREFIX_CHARS = 3
"""A shorter prefix ("a*") would hit most words of every article: refused as a likely mistake."""

DEFAULT_NEAR = 10
MAX_REGEX_CHARS = 500
MAX_DEPTH = 100
"""Nesting of groups, negations and field scopes; deeper would exhaust Python's stack in the
parser and in every walk of the tree (found by tests/test_fuzz_query.py)."""


class QueryError(ValueError):
    """A definition that cannot be compiled; `offset` is where in the text the problem starts."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset

    def line_column(self, text: str) -> tuple[int, int]:
        """1-based line and column of the offset in `text`."""
        before = text[: self.offset]
        return before.count("\n") + 1, self.offset - (before.rfind("\n") + 1) + 1


# ── the tree ─────────────────────────────────────────────────────────────────────────────────


class Pattern(NamedTuple):
    """One spelling of a term, as the automaton looks for it.

    Pattern and Term are named tuples rather than frozen dataclasses: a watchlist set can hold
    hundreds of thousands of them, and a tuple is several times cheaper to create."""

    words: str
    """Canonical words ("jake sullivan"): what the automaton finds."""
    prefix: bool = False
    """The last word may go on ("ukrain" finds "ukraine", "ukrainian")."""
    exact: str | None = None
    """For case-sensitive terms: the words as written, accents stripped, case kept ("US")."""


class Term(NamedTuple):
    """A word, phrase or alias group: occurs when any of its patterns occurs in its scope."""

    label: str
    """As the user wrote it (quotes removed): what evidence and explanations show."""
    patterns: tuple[Pattern, ...]
    scope: Scope = "any"


@dataclass(frozen=True, slots=True)
class Regex:
    """A bounded-cost regular expression over the display text of the fields in scope."""

    pattern: str
    scope: Scope = "any"

    @property
    def label(self) -> str:
        return f"/{self.pattern}/"


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Near:
    """Both terms occur in one field with at most `distance` words between them."""

    left: Term
    right: Term
    distance: int


@dataclass(frozen=True, slots=True)
class Site:
    """The article's URL host is `domain` or one of its subdomains."""

    domain: str


@dataclass(frozen=True, slots=True)
class SourceIs:
    name: str


Node = Term | Regex | And | Or | Not | Near | Site | SourceIs


def all_of(children: Sequence[Node]) -> Node:
    """And, flattened, with a single child standing for itself."""
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, And) else (child,))
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(children: Sequence[Node]) -> Node:
    """Or, flattened, with a single child standing for itself."""
    flat: list[Node] = []
    for child in children:
        flat.extend(child.children if isinstance(child, Or) else (child,))
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def terms_in(node: Node, *, positive_only: bool = False) -> Iterator[Term]:
    """Every term of a tree in reading order; with positive_only, none under a NOT."""
    if isinstance(node, Term):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from terms_in(child, positive_only=positive_only)
    elif isinstance(node, Not):
        if not positive_only:
            yield from terms_in(node.child)
    elif isinstance(node, Near):
        yield node.left
        yield node.right


def regexes_in(node: Node) -> Iterator[Regex]:
    if isinstance(node, Regex):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from regexes_in(child)
    elif isinstance(node, Not):
        yield from regexes_in(node.child)


def has_positive(node: Node) -> bool:
    """Does the rule require something to be present? A rule of only NOTs matches nearly all."""
    if isinstance(node, Term | Regex | Near):
        return True
    if isinstance(node, And):
        return any(has_positive(child) for child in node.children)
    if isinstance(node, Or):
        return all(has_positive(child) for child in node.children)
    return False


def render(node: Node) -> str:
    """The tree back in query syntax (fully parenthesised where it matters), for messages."""
    if isinstance(node, Term):
        text = node.label if " " not in node.label or "|" in node.label else f'"{node.label}"'
        if "|" in node.label:
            text = f"({node.label})"
        return {"any": "", "title": "intitle:", "body": "inbody:"}[node.scope] + text
    if isinstance(node, Regex):
        return {"any": "", "title": "intitle:", "body": "inbody:"}[node.scope] + node.label
    if isinstance(node, And):
        return " ".join(_grouped(child) for child in node.children)
    if isinstance(node, Or):
        return " OR ".join(_grouped(child) for child in node.children)
    if isinstance(node, Not):
        return "-" + _grouped(node.child)
    if isinstance(node, Near):
        return f"{render(node.left)} AROUND({node.distance}) {render(node.right)}"
    if isinstance(node, Site):
        return f"site:{node.domain}"
    return f"source:{node.name}"


def _grouped(node: Node) -> str:
    return f"({render(node)})" if isinstance(node, And | Or) else render(node)


# ── term syntax ──────────────────────────────────────────────────────────────────────────────

_PLAIN_TERM = re.compile(r"[^|=*\"/]+")


def parse_term(text: str, scope: Scope = "any", offset: int = 0) -> Term:
    """One term in term syntax (see the module docstring); `offset` places errors in a query."""
    stripped = text.strip()
    if _PLAIN_TERM.fullmatch(stripped):  # the common case, kept cheap for huge watchlists
        words = normalize_term(stripped)
        if not words:
            raise QueryError(f'term "{stripped}" has no letters or digits to match', offset)
        return Term(stripped, (Pattern(words),), scope)
    labels: list[str] = []
    patterns: list[Pattern] = []
    position = offset
    for part in text.split("|"):
        labels.append(_alternative_label(part))
        indent = len(part) - len(part.lstrip()) if part.strip() else 0
        patterns.append(_parse_alternative(part, position + indent))
        position += len(part) + 1
    return Term(" | ".join(labels), tuple(dict.fromkeys(patterns)), scope)


def _alternative_label(part: str) -> str:
    part = part.strip()
    exact = part.startswith("=")
    body = part[1:].strip() if exact else part
    if len(body) >= 2 and body[0] == body[-1] == '"':
        body = body[1:-1].strip()
    return ("=" if exact else "") + body


def _parse_alternative(part: str, offset: int) -> Pattern:
    text = part.strip()
    if not text:
        raise QueryError("empty alternative in an alias group (a | b | c)", offset)
    if len(text) > 2 and text[0] == text[-1] == "/":
        raise QueryError("a /regex/ goes in a query (with regex: true), not in a term", offset)
    exact = text.startswith("=")
    if exact:
        text = text[1:].strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1]
    elif '"' in text:
        raise QueryError(f'unbalanced quote in term "{part.strip()}"', offset + part.find('"'))
    prefix = text.endswith("*")
    if prefix:
        text = text[:-1]
    if "*" in text:
        raise QueryError('"*" may only end a term (Ukrain*)', offset + part.find("*"))
    if "=" in text:
        raise QueryError('"=" marks a case-sensitive term and goes first (=US)', offset)
    words = normalize_term(text)
    if not words:
        raise QueryError(f'term "{part.strip()}" has no letters or digits to match', offset)
    if prefix and len(words.split(" ")[-1]) < MIN_PREFIX_CHARS:
        raise QueryError(
            f'prefix "{text.strip()}*" is too short (at least {MIN_PREFIX_CHARS} letters)', offset
        )
    exact_form = None
    if exact:
        exact_form = " ".join(strip_accents(word) for word in split_words(text))
    return Pattern(words, prefix, exact_form)


# ── query syntax ─────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    """word, phrase, regex, (, ), |, OR, AND, NOT, -, near, field, site, source, end"""
    text: str
    offset: int
    value: int = 0
    """The distance of a near token."""


_NEAR = re.compile(r"(?:AROUND\((\d+)\)|NEAR(?:/(\d+))?)(?=[\s()\"]|$)")
_FIELDS = {"intitle": "title", "inbody": "body"}
_SPECIAL = set('()"|')


def _tokens(text: str) -> Iterator[_Token]:
    position = 0
    length = len(text)
    while position < length:
        char = text[position]
        if char.isspace():
            position += 1
            continue
        start = position
        if char in "()|":
            yield _Token(char, char, start)
            position += 1
            continue
        if char == "-" and position + 1 < length and not text[position + 1].isspace():
            yield _Token("-", char, start)
            position += 1
            continue
        if char == "/":
            end = start + 1
            while end < length and text[end] != "/":
                end += 2 if text[end] == "\\" else 1
            if end >= length:
                raise QueryError("unterminated /regex/ (no closing /)", start)
            yield _Token("regex", text[start + 1 : end], start)
            position = end + 1
            continue
        if char == '"' or (char == "=" and text[position + 1 : position + 2] == '"'):
            quote = text.find('"', start + (2 if char == "=" else 1))
            if quote == -1:
                raise QueryError('unterminated "quoted phrase"', start)
            end = quote + 1
            if end < length and text[end] == "*":
                end += 1
            yield _Token("phrase", text[start:end], start)
            position = end
            continue
        near = _NEAR.match(text, start)
        if near is not None:
            distance = near.group(1) or near.group(2)
            yield _Token("near", near.group(), start, int(distance) if distance else DEFAULT_NEAR)
            position = near.end()
            continue
        end = start
        while end < length and not text[end].isspace() and text[end] not in _SPECIAL:
            end += 1
        word = text[start:end]
        position = end
        field, colon, rest = word.partition(":")
        if colon and field.lower() in _FIELDS:
            yield _Token("field", _FIELDS[field.lower()], start)
            position = start + len(field) + 1
            continue
        if colon and field.lower() in ("site", "source"):
            if not rest:
                raise QueryError(f'"{field}:" needs a value ({field}:example.org)', start)
            yield _Token(field.lower(), rest, start)
            continue
        if word in ("OR", "AND", "NOT"):
            yield _Token(word, word, start)
            continue
        if word.startswith(("AROUND", "NEAR/")):
            shown = text[start:].split(maxsplit=1)[0]
            raise QueryError(f'bad proximity "{shown}" (write AROUND(5) or NEAR/5)', start)
        yield _Token("word", word, start)
    yield _Token("end", "", length)


class _Parser:
    """Recursive descent over the tokens; each method is one level of the grammar."""

    def __init__(self, text: str, allow_regex: bool) -> None:
        self.text = text
        self.allow_regex = allow_regex
        self.tokens = list(_tokens(text))
        self.index = 0
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        if self.current.kind == "end":
            raise QueryError("the query is empty", 0)
        node = self.or_expression("any")
        if self.current.kind == ")":
            raise QueryError('unbalanced ")" (no "(" to close)', self.current.offset)
        if self.current.kind != "end":
            raise QueryError(f'unexpected "{self.current.text}"', self.current.offset)
        return node

    def or_expression(self, scope: Scope) -> Node:
        children = [self.and_expression(scope)]
        while self.current.kind == "OR":
            self.advance()
            children.append(self.and_expression(scope))
        return any_of(children)

    def and_expression(self, scope: Scope) -> Node:
        children = [self.unary(scope)]
        while self.current.kind not in ("OR", ")", "end"):
            if self.current.kind == "AND":
                self.advance()
            children.append(self.unary(scope))
        return all_of(children)

    def unary(self, scope: Scope) -> Node:
        token = self.current
        if token.kind in ("NOT", "-"):
            self.advance()
            with self.nested(token):
                return Not(self.unary(scope))
        return self.proximity(scope)

    @contextlib.contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        """One level deeper for what `token` opens; refused past MAX_DEPTH."""
        if self.depth >= MAX_DEPTH:
            raise QueryError(f"nested more than {MAX_DEPTH} levels deep", token.offset)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def proximity(self, scope: Scope) -> Node:
        left = self.alias_group(scope)
        while self.current.kind == "near":
            near = self.advance()
            right = self.alias_group(scope)
            if not isinstance(left, Term) or not isinstance(right, Term):
                raise QueryError(
                    f'"{near.text}" joins two words, phrases or alias groups', near.offset
                )
            left_term: Node = Near(left, right, near.value)
            left = left_term
        return left

    def alias_group(self, scope: Scope) -> Node:
        start = self.current
        node = self.primary(scope)
        if self.current.kind != "|":
            return node
        parts = [node]
        while self.current.kind == "|":
            bar = self.advance()
            if self.current.kind not in ("word", "phrase"):
                raise QueryError('"|" joins spellings of one term (Kyiv | Kiev)', bar.offset)
            parts.append(self.primary(scope))
        if not all(isinstance(part, Term) for part in parts):
            raise QueryError('"|" joins spellings of one term (Kyiv | Kiev)', start.offset)
        terms = [part for part in parts if isinstance(part, Term)]
        return Term(
            " | ".join(term.label for term in terms),
            tuple(dict.fromkeys(p for term in terms for p in term.patterns)),
            scope,
        )

    def primary(self, scope: Scope) -> Node:
        token = self.advance()
        if token.kind == "(":
            if self.current.kind == ")":
                raise QueryError("empty parentheses", token.offset)
            with self.nested(token):
                node = self.or_expression(scope)
            if self.current.kind != ")":
                raise QueryError('unclosed "(" (missing ")")', token.offset)
            self.advance()
            return node
        if token.kind == "field":
            if self.current.kind in ("end", ")", "OR"):
                raise QueryError("a field scope needs a term or a group after it", token.offset)
            field_scope: Scope = "title" if token.text == "title" else "body"
            with self.nested(token):
                return self.primary(field_scope)
        if token.kind == "site":
            return Site(token.text.lower().removeprefix("www.").rstrip("/"))
        if token.kind == "source":
            return SourceIs(token.text)
        if token.kind == "regex":
            return self.regex(token, scope)
        if token.kind in ("word", "phrase"):
            return parse_term(token.text, scope, token.offset)
        if token.kind == "end":
            raise QueryError("the query ends where a term was expected", token.offset)
        if token.kind == ")":
            raise QueryError('unbalanced ")" (no "(" to close)', token.offset)
        raise QueryError(f'"{token.text}" needs a term before and after it', token.offset)

    def regex(self, token: _Token, scope: Scope) -> Regex:
        if not self.allow_regex:
            raise QueryError(
                "regular expressions are off for this watchlist (set regex: true to allow them)",
                token.offset,
            )
        if len(token.text) > MAX_REGEX_CHARS:
            raise QueryError(f"regular expression longer than {MAX_REGEX_CHARS}", token.offset)
        from feeds.regex_terms import RegexTermError, compile_regex

        try:
            compile_regex(token.text)
        except RegexTermError as error:
            raise QueryError(f"bad regular expression: {error}", token.offset) from None
        return Regex(token.text, scope)


def parse_query(text: str, *, allow_regex: bool = False) -> Node:
    """Parse a query string into a tree; raises QueryError with the offset of the problem."""
    node = _Parser(text, allow_regex).parse()
    if not has_positive(node):
        raise QueryError("the query only excludes: say what to look for too", 0)
    return node


def watchlist_tree(
    keywords: Sequence[str] = (),
    all_terms: Sequence[str] = (),
    exclude: Sequence[str] = (),
    query: str = "",
    *,
    allow_regex: bool = False,
) -> Node:
    """The one tree for a watchlist written with term lists, a query, or both (ANDed)."""
    parts: list[Node] = []
    if query.strip():
        parts.append(parse_query(query, allow_regex=allow_regex))
    if keywords:
        parts.insert(0, any_of([parse_term(term) for term in keywords]))
    parts.extend(parse_term(term) for term in all_terms)
    parts.extend(Not(parse_term(term)) for term in exclude)
    # Keywords make the rule positive by themselves (checked without a walk: lists can be huge).
    if not parts or (not keywords and not has_positive(all_of(parts))):
        raise QueryError("a watchlist needs keywords or a query saying what to look for", 0)
    return all_of(parts)
