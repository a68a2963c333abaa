"""Learned per-site boilerplate: the text blocks a site repeats on most of its recent pages.

News sites put the same appeals, prompts and credits on every article, often inside the article
container, worded in ways no phrase rule knows. Counting is the generic remedy: each cleaned page
contributes the fingerprints of its blocks, and a block found on most of a site's recent pages is
furniture, whatever it says.

How it stays safe (an article's own text must never be dropped because of this):

* a block is never dropped before it has been seen on `MIN_SIGHTINGS` different pages, so text that
  appeared once elsewhere (a quote repeated by a follow-up story) always survives;
* it must also be on more than `SHARE` of the site's recent pages, weighed by recency, and the site
  must have `MIN_PAGES` pages on record: a story running over a few days does not make its own
  paragraphs furniture;
* `feeds.extract` ignores the template for a page where it would remove most of the text.

"Recent" is an exponential decay: each new page of the site multiplies the weight of every earlier
sighting by `DECAY`, so a site redesign (new furniture) takes over within a few dozen pages and
retired furniture is forgotten. The decay is applied lazily (a block's weight is stored with the
page number it was last updated at), so learning a page only touches that page's own blocks.

Everything here is pure: the store persists `SiteTemplate` values, the extractor reads them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

from feeds.text import fold_for_comparison

DECAY = 0.95
"""Weight kept by an earlier sighting for each later page of the site: about the last 20-40
pages are what counts as "recent"."""

SHARE = 0.5
"""A block must be on more than this share of the recent pages (by weight) to be boilerplate."""

MIN_SIGHTINGS = 3
"""...and on at least this many different pages, ever."""

MIN_PAGES = 10
"""No block of a site is dropped before this many of its pages have been seen."""

FORGET_BELOW = 0.25
"""A block whose weight has decayed under this is forgotten (a paragraph seen once, then not
again for 27 pages), which keeps each site's record to roughly its furniture plus its last few
dozen articles."""


@dataclass(frozen=True, slots=True)
class BlockStat:
    """What is known of one block of a site."""

    weight: float
    """Decayed number of pages it was on, as of page number `last_page`."""
    last_page: int
    """The site's page number at which `weight` was last brought up to date (and it was seen)."""
    sightings: int
    """On how many pages it was seen, never decayed."""

    def weight_at(self, page: int) -> float:
        """The weight once the site has seen `page` pages."""
        return self.weight * DECAY ** max(0, page - self.last_page)


@dataclass(frozen=True, slots=True)
class SiteTemplate:
    """A site's block statistics after `pages` pages."""

    site: str
    pages: int = 0
    blocks: Mapping[str, BlockStat] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def recent_pages(self) -> float:
        """The decayed page count: the weight a block on every page would have."""
        return (1 - DECAY**self.pages) / (1 - DECAY)

    def is_boilerplate(self, fingerprint: str) -> bool:
        """Whether a block with this fingerprint is the site's furniture (see the module doc)."""
        stat = self.blocks.get(fingerprint)
        if stat is None or self.pages < MIN_PAGES or stat.sightings < MIN_SIGHTINGS:
            return False
        return stat.weight_at(self.pages) > SHARE * self.recent_pages

    def boilerplate(self) -> frozenset[str]:
        """Every fingerprint that is furniture now."""
        return frozenset(f for f in self.blocks if self.is_boilerplate(f))


def site_of(url: str) -> str:
    """The key a page's template is kept under: its host, lower-cased, without "www."."""
    host = (urlsplit(url).hostname or "").lower()
    return host.removeprefix("www.")


def fingerprint(text: str) -> str:
    """A short stable key for a block of display text; case, punctuation and spacing do not
    count (the same prompt rendered with a different apostrophe is the same block)."""
    folded = fold_for_comparison(text)
    return hashlib.blake2b(folded.encode("utf-8"), digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class Learned:
    """A template after one more page, and what changed, for the store to write."""

    template: SiteTemplate
    updated: Mapping[str, BlockStat]
    """The blocks of the page, with their new statistics."""
    forgotten: frozenset[str]
    """Blocks dropped from the record (decayed under `FORGET_BELOW`)."""


def learn(template: SiteTemplate, fingerprints: Iterable[str]) -> Learned:
    """Count one more page of the site, holding these blocks (duplicates count once)."""
    page = template.pages + 1
    updated: dict[str, BlockStat] = {}
    for key in set(fingerprints):
        old = template.blocks.get(key)
        weight = old.weight_at(page) if old else 0.0
        sightings = old.sightings if old else 0
        updated[key] = BlockStat(weight + 1.0, page, sightings + 1)
    forgotten = frozenset(
        key
        for key, stat in template.blocks.items()
        if key not in updated and stat.weight_at(page) < FORGET_BELOW
    )
    blocks = {k: v for k, v in template.blocks.items() if k not in forgotten} | updated
    return Learned(
        SiteTemplate(template.site, page, MappingProxyType(blocks)),
        MappingProxyType(updated),
        forgotten,
    )
