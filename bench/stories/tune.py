"""Tune and check the near-duplicate thresholds of feeds.stories on tests/fixtures/stories.

Run: .venv/bin/python -m bench.stories.tune

Prints every pair of example articles with its body resemblance and title similarity and whether
it is the same story, then, for a sweep of body thresholds (with and without the title rule), how
many same-story pairs are found (recall) and how many different-story pairs are wrongly joined.
"""

from __future__ import annotations

import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

from feeds.stories import (
    SAME_BODY,
    SAME_BODY_WITH_TITLE,
    SAME_TITLE,
    Fingerprint,
    body_resemblance,
    closest_story,
    fingerprint,
    same_story,
    title_similarity,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "stories"


@dataclass(frozen=True, slots=True)
class Example:
    name: str
    story: str
    fingerprint: Fingerprint


def load_examples(folder: Path = EXAMPLES) -> list[Example]:
    examples = []
    for path in sorted(folder.glob("*.txt")):
        title, _, body = path.read_text(encoding="utf-8").partition("\n\n")
        examples.append(Example(path.stem, path.stem.split("--")[0], fingerprint(title, body)))
    return examples


def pairs(examples: list[Example]) -> list[tuple[Example, Example]]:
    return list(itertools.combinations(examples, 2))


def score(
    examples: list[Example], body: float, body_with_title: float | None, title: float
) -> tuple[int, int, int, int]:
    """(same-story pairs found, same-story pairs, different pairs joined, different pairs)."""
    found = same = joined = different = 0
    for a, b in pairs(examples):
        resemblance = body_resemblance(a.fingerprint, b.fingerprint)
        titles = title_similarity(a.fingerprint, b.fingerprint)
        decided = resemblance >= body or (
            body_with_title is not None and resemblance >= body_with_title and titles >= title
        )
        if a.story == b.story:
            same += 1
            found += decided
        else:
            different += 1
            joined += decided
    return found, same, joined, different


def main() -> int:
    examples = load_examples()
    print(f"{len(examples)} articles, {len(pairs(examples))} pairs\n")
    print(f"{'pair':<58} {'body':>5} {'title':>5}  truth  decided")
    for a, b in pairs(examples):
        resemblance = body_resemblance(a.fingerprint, b.fingerprint)
        titles = title_similarity(a.fingerprint, b.fingerprint)
        if a.story != b.story and resemblance < 0.05 and titles < 0.2:
            continue  # unrelated and far apart: not worth a line
        truth = "same" if a.story == b.story else "diff"
        decided = "same" if same_story(a.fingerprint, b.fingerprint) else "diff"
        print(
            f"{a.name + ' ~ ' + b.name:<58} {resemblance:5.2f} {titles:5.2f}  {truth:<5}  {decided}"
        )
    print("\nbody threshold sweep (title rule: body ≥ T2 and title ≥ T3)")
    print(f"{'body ≥':>7} {'T2':>5} {'T3':>5}  same found   different joined")
    for body in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.8):
        for with_title in (None, SAME_BODY_WITH_TITLE):
            found, same, joined, different = score(examples, body, with_title, SAME_TITLE)
            t2 = "-" if with_title is None else f"{with_title:.2f}"
            counts = f"{found:>3}/{same:<6}  {joined:>3}/{different}"
            print(f"{body:7.2f} {t2:>5} {SAME_TITLE:5.2f}  {counts}")
    found, same, joined, different = score(examples, SAME_BODY, SAME_BODY_WITH_TITLE, SAME_TITLE)
    print(
        f"\nchosen: body ≥ {SAME_BODY}, or body ≥ {SAME_BODY_WITH_TITLE} with title ≥ {SAME_TITLE}:"
        f" {found}/{same} same-story pairs found, {joined}/{different} different pairs joined"
    )
    stories = assign_in_order(examples)
    found, same, joined, different = story_pairs(examples, stories)
    print(
        f"as the store assigns them (each article joins the closest earlier story, agency copy"
        f" first): {found}/{same} same-story pairs in one story, {joined}/{different} different"
        f" pairs in one story, {len(set(stories.values()))} stories for"
        f" {len({e.story for e in examples})}"
    )
    return 0


def assign_in_order(examples: list[Example]) -> dict[str, int]:
    """Story ids as bot.story_store gives them, articles arriving agency copy first."""
    ordered = sorted(examples, key=lambda e: (not e.name.endswith("--wire"), e.name))
    stories: dict[str, int] = {}
    seen: list[tuple[int, Fingerprint]] = []
    for number, example in enumerate(ordered):
        story = closest_story(example.fingerprint, seen)
        stories[example.name] = number if story is None else story
        seen.append((stories[example.name], example.fingerprint))
    return stories


def story_pairs(examples: list[Example], stories: dict[str, int]) -> tuple[int, int, int, int]:
    found = same = joined = different = 0
    for a, b in pairs(examples):
        together = stories[a.name] == stories[b.name]
        if a.story == b.story:
            same += 1
            found += together
        else:
            different += 1
            joined += together
    return found, same, joined, different


if __name__ == "__main__":
    sys.exit(main())
