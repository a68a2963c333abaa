"""One story, many articles: near-duplicate detection for syndicated and re-published copies.

A wire story runs in dozens of outlets with a new headline, a trimmed last paragraph or an added
line; a site re-publishes an article under a new URL after a light edit. Users want one alert for
it, and to see who else ran it. The test is:

- **body resemblance**: the Jaccard similarity of the sets of word 4-shingles of the cleaned,
  canonical text (feeds.normalize), estimated from a *bottom-k sketch*: the k smallest 64-bit
  hashes of the shingles. One hash per shingle and a sort make it cheap (no k hash functions as
  in classic MinHash), the sketch is small enough to store with the article, and when both texts
  have fewer than k shingles the estimate is the exact Jaccard.
- **title similarity**: the Jaccard similarity of the sets of canonical title words, which lets a
  lower body resemblance count when the headline is (almost) the same, as for wire copies with a
  different intro or ending.

The thresholds were chosen on tests/fixtures/stories (wire copies, rewrites, unrelated articles
of the same day, including same-topic ones); `bench/stories/tune.py` prints the figures for
every pair and for a sweep of thresholds, recorded in docs/benchmarks.md.

Pure: no database, no clock. bot.story_store keeps the sketches and story ids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from hashlib import blake2b

from feeds.normalize import canonical_form

SKETCH_SIZE = 128
SHINGLE_WORDS = 4

SAME_BODY = 0.15
"""Body resemblance at or above which two articles are one story whatever their titles. On the
examples, different stories on the same topic and day score at most 0.08 (word 4-shingles
rarely repeat by chance), copies and rewrites of a full story 0.26 to 0.93, and a trimmed copy
("More to follow") 0.12 to 0.20 against the others of its story."""
SAME_BODY_WITH_TITLE = 0.1
"""Body resemblance enough when the titles are close (at least SAME_TITLE)."""
SAME_TITLE = 0.6
MIN_SHINGLES = 12
"""Below this many shingles (about a dozen words) a body says too little: only an identical
title of several words can then make two articles one story."""
MIN_TITLE_WORDS = 4
INDEX_KEYS = 16


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What near-duplicate detection keeps of an article."""

    title_words: frozenset[str]
    sketch: tuple[int, ...]
    """The smallest SKETCH_SIZE shingle hashes, ascending."""
    shingles: int
    """How many distinct shingles the body has (the sketch holds at most SKETCH_SIZE of them)."""

    def to_text(self) -> str:
        """A compact, stable text form for the database."""
        return json.dumps(
            {"t": sorted(self.title_words), "s": list(self.sketch), "n": self.shingles},
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_text(cls, text: str) -> Fingerprint:
        data = json.loads(text)
        return cls(frozenset(data["t"]), tuple(data["s"]), int(data["n"]))


def fingerprint(title: str, text: str) -> Fingerprint:
    """The fingerprint of an article's cleaned title and body."""
    words = canonical_form(text).split()
    shingles = {
        " ".join(words[i : i + SHINGLE_WORDS])
        for i in range(max(1, len(words) - SHINGLE_WORDS + 1))
        if words
    }
    hashes = sorted(
        # 63 bits, so that a hash fits a signed 64-bit database integer.
        int.from_bytes(blake2b(shingle.encode(), digest_size=8).digest(), "big") >> 1
        for shingle in shingles
    )
    return Fingerprint(
        frozenset(canonical_form(title).split()), tuple(hashes[:SKETCH_SIZE]), len(shingles)
    )


def index_keys(print_: Fingerprint) -> tuple[int, ...]:
    """The hashes to index an article under: two articles worth comparing share one of them.

    They are the INDEX_KEYS smallest hashes of the sketch. For two bodies of resemblance J, the
    smallest INDEX_KEYS hashes of the union each belong to both with probability J, so they share
    none with probability about (1 - J) ** INDEX_KEYS: 3% at the threshold J = 0.2, under 0.1% at
    J = 0.35; unrelated articles (J near 0) share none and are never compared.

    Plus one key for a title of several words, so that teasers with the same headline meet.
    """
    keys = print_.sketch[:INDEX_KEYS]
    if len(print_.title_words) >= MIN_TITLE_WORDS:
        title = " ".join(sorted(print_.title_words)).encode()
        keys += (int.from_bytes(blake2b(title, digest_size=8).digest(), "big") >> 1,)
    return keys


def body_resemblance(a: Fingerprint, b: Fingerprint) -> float:
    """Estimated Jaccard similarity of the two bodies' shingle sets (0.0 to 1.0)."""
    if not a.sketch or not b.sketch:
        return 0.0
    mine, theirs = set(a.sketch), set(b.sketch)
    union = sorted(mine | theirs)[:SKETCH_SIZE]
    both = sum(1 for value in union if value in mine and value in theirs)
    return both / len(union)


def title_similarity(a: Fingerprint, b: Fingerprint) -> float:
    if not a.title_words or not b.title_words:
        return 0.0
    return len(a.title_words & b.title_words) / len(a.title_words | b.title_words)


def same_story(a: Fingerprint, b: Fingerprint) -> bool:
    """Are these two articles copies of one story? See the module docstring for the rule."""
    title = title_similarity(a, b)
    if min(a.shingles, b.shingles) < MIN_SHINGLES:
        return title == 1.0 and len(a.title_words) >= MIN_TITLE_WORDS
    body = body_resemblance(a, b)
    return body >= SAME_BODY or (body >= SAME_BODY_WITH_TITLE and title >= SAME_TITLE)


def closest_story(new: Fingerprint, candidates: list[tuple[int, Fingerprint]]) -> int | None:
    """The story id of the candidate most like `new` among those that are the same story."""
    best: tuple[float, int] | None = None
    for story_id, candidate in candidates:
        if same_story(new, candidate):
            score = body_resemblance(new, candidate) + title_similarity(new, candidate)
            if best is None or score > best[0]:
                best = (score, story_id)
    return None if best is None else best[1]
