"""Near-duplicate detection: the tuned rule on the committed examples, and the sketch maths."""

from __future__ import annotations

import pytest

from bench.stories.tune import assign_in_order, load_examples, pairs, story_pairs
from feeds.stories import (
    SAME_BODY,
    SKETCH_SIZE,
    Fingerprint,
    body_resemblance,
    closest_story,
    fingerprint,
    same_story,
    title_similarity,
)


def test_no_two_different_stories_are_ever_joined() -> None:
    examples = load_examples()
    assert len({example.story for example in examples}) >= 8
    joined = [
        (a.name, b.name)
        for a, b in pairs(examples)
        if a.story != b.story and same_story(a.fingerprint, b.fingerprint)
    ]
    assert joined == []


def test_every_example_ends_in_its_own_story_as_the_store_assigns_them() -> None:
    examples = load_examples()
    stories = assign_in_order(examples)
    found, same, joined, _ = story_pairs(examples, stories)
    assert (found, joined) == (same, 0)
    assert len(set(stories.values())) == len({example.story for example in examples})


def test_the_threshold_keeps_a_margin_over_same_topic_stories() -> None:
    """Different stories of one topic and day stay well below the threshold."""
    examples = load_examples()
    different = [
        body_resemblance(a.fingerprint, b.fingerprint)
        for a, b in pairs(examples)
        if a.story != b.story
    ]
    assert max(different) < 0.1
    assert 1.5 * max(different) <= SAME_BODY


def test_resemblance_is_exact_for_small_texts_and_estimated_for_long_ones() -> None:
    words = [f"w{i}" for i in range(40)]
    a = fingerprint("t", " ".join(words))
    b = fingerprint("t", " ".join(words[:20] + [f"x{i}" for i in range(20)]))
    # 37 shingles each, 17 shared: exact Jaccard 17 / 57.
    assert body_resemblance(a, b) == pytest.approx(17 / 57)
    assert body_resemblance(a, a) == 1.0
    long_words = [f"w{i}" for i in range(2000)]
    c = fingerprint("t", " ".join(long_words))
    d = fingerprint("t", " ".join(long_words[:1000] + [f"y{i}" for i in range(1000)]))
    assert len(c.sketch) == SKETCH_SIZE
    assert body_resemblance(c, d) == pytest.approx(997 / 2997, abs=0.12)


def test_text_form_round_trips() -> None:
    original = fingerprint("Orbán meets Putin", "Viktor Orbán met Vladimir Putin in Moscow today.")
    assert Fingerprint.from_text(original.to_text()) == original
    assert title_similarity(original, original) == 1.0
    assert body_resemblance(original, fingerprint("", "")) == 0.0


def test_teasers_need_an_identical_title_of_several_words() -> None:
    teaser = fingerprint("Dock workers strike at Harwick port", "Short teaser.")
    same_title = fingerprint("Dock workers strike at Harwick port", "Another short teaser.")
    other_title = fingerprint("Dock workers vote at Harwick port", "Short teaser.")
    short_title = fingerprint("Live updates", "Short teaser.")
    assert same_story(teaser, same_title)
    assert not same_story(teaser, other_title)
    assert not same_story(short_title, short_title)


def test_closest_story_picks_the_most_similar_match() -> None:
    examples = {example.name: example.fingerprint for example in load_examples()}
    candidates = [
        (1, examples["port-vote--wire"]),
        (2, examples["port-strike--copy-b"]),
        (3, examples["port-strike--wire"]),
    ]
    assert closest_story(examples["port-strike--copy-a"], candidates) == 3
    assert closest_story(examples["transfer--wire"], candidates) is None
