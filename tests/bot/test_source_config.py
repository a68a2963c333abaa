"""Appending sources to a YAML config: layout and comments kept, nothing written when invalid."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.settings import SettingsError
from bot.source_config import NewSource, add_sources, slug_for

INDENTED = """\
# top
server:
  host: 127.0.0.1

sources:
  # the first outlet
  - name: first
    url: "https://a.example/f"   # keep this comment
    every: 5m

watchlists:
  - name: kyiv
    keywords: [Kyiv]
"""
FLUSH = """\
sources:
- name: first
  url: "https://a.example/f"   # keep this comment
# about watchlists
watchlists:
- name: kyiv
  keywords: [Kyiv]
"""


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (
            INDENTED,
            INDENTED.replace(
                "    every: 5m\n",
                "    every: 5m\n  - name: b-news\n    title: B News\n    url: https://b.example/f\n",
            ),
        ),
        (
            FLUSH,
            FLUSH.replace(
                "# about",
                "- name: b-news\n  title: B News\n  url: https://b.example/f\n# about",
            ),
        ),
    ],
    ids=["indented", "flush"],
)
def test_layout_and_comments_survive(tmp_path: Path, before: str, after: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(before, encoding="utf-8")
    assert add_sources(path, [NewSource("https://b.example/f", "B News")]) == ["b-news"]
    assert path.read_text(encoding="utf-8") == after


def test_an_invalid_result_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(FLUSH, encoding="utf-8")
    with pytest.raises(SettingsError):
        add_sources(path, [NewSource("https://b.example/f", name="Not A Slug")])
    assert path.read_text(encoding="utf-8") == FLUSH
    # no temporary file left behind; the lock file stays (see bot.config_edit)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".w.yaml.lock", "w.yaml"]


@pytest.mark.parametrize(
    ("text", "taken", "expected"),
    [
        ("Kyiv Independent", set(), "kyiv-independent"),
        ("Kyiv Independent", {"kyiv-independent"}, "kyiv-independent-2"),
        ("Ñews — Élite!", set(), "news-elite"),
        ("", set(), "source"),
        ("x" * 60, set(), "x" * 40),
    ],
)
def test_slug_for(text: str, taken: set[str], expected: str) -> None:
    assert slug_for(text, taken) == expected
