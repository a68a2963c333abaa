"""The ingestion keys of the configuration: politeness limits, page sources, polling bounds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.ingest import SourceJob
from bot.polling import job_for, spread_by_host
from bot.settings import SettingsError, load_settings

BASE = """\
fetch: {fetch}
sources:
{source}
watchlists:
  - {{name: k, keywords: [Kyiv]}}
"""


def load(tmp_path: Path, source: str, fetch: str = "{}") -> object:
    path = tmp_path / "w.yaml"
    path.write_text(BASE.format(source=source, fetch=fetch), encoding="utf-8")
    return load_settings(path, environ={})


def problems(tmp_path: Path, source: str, fetch: str = "{}") -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load(tmp_path, source, fetch)
    return [str(problem) for problem in caught.value.problems]


def test_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, "  - {name: s, url: 'https://n.example/feed', every: 10m}")
    fetch = settings.fetch  # type: ignore[attr-defined]
    assert (fetch.per_host, fetch.host_delay, fetch.backoff_cap, fetch.robots) == (
        2,
        timedelta(seconds=1),
        timedelta(hours=6),
        True,
    )
    [source] = settings.sources  # type: ignore[attr-defined]
    job = job_for(source, fetch.backoff_cap)
    assert (job.cadence.min_every, job.cadence.every, job.cadence.max_every) == (
        timedelta(minutes=10),
        timedelta(minutes=10),
        timedelta(minutes=40),
    )
    assert job.listing is None


def test_a_page_source_with_selectors(tmp_path: Path) -> None:
    settings = load(
        tmp_path,
        "  - name: p\n    type: page\n    url: 'https://n.example/world'\n"
        "    selectors: {links: 'article h2 a', date: time}\n"
        "    min_every: 5m\n    every: 10m\n    max_every: 2h",
        "{per_host: 1, host_delay: 0s, backoff_cap: 1h, robots: false}",
    )
    [source] = settings.sources  # type: ignore[attr-defined]
    job = job_for(source)
    assert job.listing is not None and job.listing.links == "article h2 a"
    assert (job.cadence.min_every, job.cadence.max_every) == (
        timedelta(minutes=5),
        timedelta(hours=2),
    )
    assert settings.fetch.host_delay == timedelta(0)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("source", "fetch", "expected"),
    [
        ("  - {name: p, type: page, url: 'https://n.example/'}", "{}", "needs selectors"),
        (
            "  - {name: p, url: 'https://n.example/f', selectors: {links: a}}",
            "{}",
            "only for type: page",
        ),
        (
            "  - {name: p, type: page, url: 'https://n.example/', selectors: {links: 'a['}}",
            "{}",
            "bad CSS selector",
        ),
        (
            "  - {name: p, url: 'https://n.example/f', every: 10m, min_every: 20m}",
            "{}",
            "min_every",
        ),
        ("  - {name: p, url: 'https://n.example/f', type: video}", "{}", "type"),
        ("  - {name: p, url: 'https://n.example/f'}", "{per_host: 0}", "per_host"),
    ],
)
def test_mistakes_are_located(tmp_path: Path, source: str, fetch: str, expected: str) -> None:
    found = problems(tmp_path, source, fetch)
    assert found and all(line.startswith(str(tmp_path / "w.yaml") + ":") for line in found)
    assert any(expected in line for line in found), found


def test_polls_start_host_by_host_in_turn() -> None:
    jobs = [
        SourceJob(name, url)
        for name, url in [
            ("a1", "https://a.example/1"),
            ("a2", "https://a.example/2"),
            ("a3", "https://A.example:8443/3"),
            ("b1", "https://b.example/1"),
            ("c1", "https://c.example/1"),
            ("b2", "https://b.example/2"),
        ]
    ]
    assert [jobs[i].name for i in spread_by_host(jobs)] == ["a1", "b1", "c1", "a2", "b2", "a3"]
    assert spread_by_host([]) == []
