"""The outside contract of the `wirewatch` command: exit codes and output formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DEMO_SITE, REPO, SHARED, run_cli

BROKEN = REPO / "tests" / "fixtures" / "configs" / "broken"


def test_check_accepts_the_shipped_configs() -> None:
    for config in ("config/wirewatch.yaml", "config/demo.yaml"):
        result = run_cli("--config", config, "check", env={"TELEGRAM_BOT_TOKEN": ""})
        assert result.returncode == 0, result.stderr
        assert "ok" in result.stdout


def test_check_reports_every_problem_as_file_line_column_and_exits_2() -> None:
    result = run_cli("--config", str(BROKEN / "bad_duration.yaml"), "check")
    assert result.returncode == 2
    expected = (BROKEN / "bad_duration.expected").read_text(encoding="utf-8").splitlines()
    assert result.stderr.splitlines() == [f"{BROKEN / line}" for line in expected]


def test_config_comes_from_the_environment_when_not_given(tmp_path: Path) -> None:
    result = run_cli("check", env={"WIREWATCH_CONFIG": str(tmp_path / "missing.yaml")})
    assert result.returncode == 2
    assert result.stderr.startswith(f"{tmp_path / 'missing.yaml'}:1:1: ")


def test_clean_a_file_as_json() -> None:
    page = DEMO_SITE / "articles" / "nato-baltic-deployment.html"
    result = run_cli("clean", str(page), "--url", "https://example.org/nato.html", "--json")
    assert result.returncode == 0, result.stderr
    article = json.loads(result.stdout)
    assert article["title"] == "Nato moves more jets to the Baltic states"
    assert article["text"].startswith("Nato allies are sending additional fighter jets")
    assert "newsletter" not in article["text"] and "Most popular" not in article["text"]
    assert article["published"] == "2022-02-06T11:00:00+00:00"


def test_clean_batch_prints_one_json_line_per_page_in_order(tmp_path: Path) -> None:
    pages = sorted((DEMO_SITE / "articles").glob("*.html"))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(
        "".join(
            json.dumps({"id": p.stem, "path": str(p), "url": f"https://example.org/{p.name}"})
            + "\n"
            for p in pages
        ),
        encoding="utf-8",
    )
    result = run_cli("clean", "--batch", str(manifest))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == [p.stem for p in pages]
    assert all(line["title"] and line["text"] for line in lines)


@pytest.mark.skipif(not (SHARED / "tools").exists(), reason="shared/ is not beside the repo")
def test_clean_batch_is_what_the_extraction_scorer_drives(tmp_path: Path) -> None:
    """The scorer's own batch protocol, on two pages of the benchmark."""
    import gzip

    data = SHARED / "datasets" / "article-extraction"
    truth = json.loads((data / "ground-truth.json").read_text(encoding="utf-8"))
    ids = sorted(truth)[:2]
    manifest = tmp_path / "manifest.jsonl"
    with manifest.open("w", encoding="utf-8") as out:
        for page_id in ids:
            path = tmp_path / f"{page_id}.html"
            path.write_bytes(gzip.decompress((data / "html" / f"{page_id}.html.gz").read_bytes()))
            out.write(json.dumps({"id": page_id, "path": str(path), "url": truth[page_id]["url"]}))
            out.write("\n")
    result = run_cli("clean", "--batch", str(manifest))
    assert result.returncode == 0, result.stderr
    assert [json.loads(line)["id"] for line in result.stdout.splitlines()] == ids


def test_match_batch(tmp_path: Path) -> None:
    articles = tmp_path / "articles.jsonl"
    records = [
        {"id": "a", "title": "Macron meets Putin", "text": "Talks on Ukraine and Nato."},
        {"id": "b", "title": "Ukraine win", "text": "A football match in Glasgow."},
        {"id": "c", "title": "Weather", "text": "Sunny in Natoli."},
        {"id": "d", "title": "Pipeline", "text": "Nord Stream 2 and Nato", "source": "x"},
    ]
    articles.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    result = run_cli("--config", "config/demo.yaml", "match", "--batch", str(articles))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {"id": "a", "watchlist": "ukraine", "terms": ["Ukraine", "Nato"]},
        {"id": "a", "watchlist": "nato", "terms": ["Nato"]},
        {"id": "d", "watchlist": "ukraine", "terms": ["Nato"]},
        {"id": "d", "watchlist": "nato", "terms": ["Nato"]},
        {"id": "d", "watchlist": "energy", "terms": ["Nord Stream"]},
    ]


def test_match_batch_names_the_bad_line(tmp_path: Path) -> None:
    articles = tmp_path / "articles.jsonl"
    articles.write_text('{"id": "a", "title": "x", "text": "y"}\nnot json\n', encoding="utf-8")
    result = run_cli("--config", "config/demo.yaml", "match", "--batch", str(articles))
    assert result.returncode != 0
    assert f"{articles}:2:" in result.stderr


def test_version() -> None:
    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.startswith("wirewatch ")
