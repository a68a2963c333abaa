"""`wirewatch match --explain`, `wirewatch backtest` and `wirewatch check` on watch-language
mistakes, run in-process on real config files and a real SQLite store."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.store import Store
from feeds.match import Matcher
from feeds.models import Article, Watchlist
from tests.conftest import REPO, run_cli

BROKEN = REPO / "tests" / "fixtures" / "configs" / "broken"


def write_config(tmp_path: Path, watchlist: str) -> Path:
    config = tmp_path / "wirewatch.yaml"
    config.write_text(
        f"""\
database: sqlite:///{tmp_path / "db.sqlite"}
sources:
  - name: wire
    url: https://wire.example/rss
  - name: herald
    url: https://herald.example/rss
watchlists:
{watchlist}
""",
        encoding="utf-8",
    )
    return config


def test_check_points_at_the_character_where_a_query_goes_wrong() -> None:
    result = run_cli("--config", str(BROKEN / "bad_query.yaml"), "check")
    assert result.returncode == 2
    expected = (BROKEN / "bad_query.expected").read_text(encoding="utf-8").splitlines()
    assert result.stderr.splitlines() == [f"{BROKEN / line}" for line in expected]


def test_a_query_watchlist_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        """\
  - name: ukraine
    query: |
      (Kyiv | Kiev | Київ) AROUND(5) drone*
      OR intitle:"Jake Sullivan" -football
    languages: [en, UK]
    min_mentions: 2
    regex: true
    all: ["/F-?35/"]
""",
    )
    assert main(["--config", str(config), "check"]) == 2  # a regex is query syntax, not a term
    assert "all[0]" in capsys.readouterr().err
    config = write_config(
        tmp_path,
        """\
  - name: ukraine
    query: |
      (Kyiv | Kiev | Київ) AROUND(5) drone* /F-?35/
      OR intitle:"Jake Sullivan" -football
    languages: [en, UK]
    min_mentions: 2
    regex: true
""",
    )
    assert main(["--config", str(config), "check"]) == 0


def test_match_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(
        tmp_path,
        "  - name: ukraine\n    query: Ukraine (troops OR invasion) -football\n",
    )
    articles = tmp_path / "articles.jsonl"
    articles.write_text(
        json.dumps({"id": "a1", "title": "Ukraine", "text": "Troops massed."})
        + "\n"
        + json.dumps({"id": "a2", "title": "Ukraine", "text": "A football match."})
        + "\n",
        encoding="utf-8",
    )
    args = ["--config", str(config), "match", "--batch", str(articles)]
    assert main([*args, "--explain", "ukraine"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "article a1:",
        "  watchlist ukraine: MATCHES",
        "  rule: Ukraine (troops OR invasion) -football",
        "    ✓ all of:",
        "      ✓ Ukraine: found 1× in title",
        "      ✓ any of:",
        "        ✓ troops: found 1× in body",
        "        ✗ invasion: not found",
        "      ✓ none of:",
        "        ✗ football: not found",
        "article a2:",
        "  watchlist ukraine: does not match",
        "  rule: Ukraine (troops OR invasion) -football",
        "    ✗ all of:",
        "      ✓ Ukraine: found 1× in title",
        "      ✗ any of:",
        "        ✗ troops: not found",
        "        ✗ invasion: not found",
        "      ✗ none of:",
        "        ✓ football: found 1× in body",
    ]
    assert main([*args, "--explain", "nope"]) == 2
    assert 'no watchlist "nope"' in capsys.readouterr().err
    # Without --explain the output format is unchanged: one JSON line per match.
    assert main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        '{"id": "a1", "watchlist": "ukraine", "terms": ["Ukraine", "troops"]}'
    ]


def test_backtest_shows_what_a_new_definition_adds_and_loses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    old = Matcher([Watchlist("ukraine", ("Ukraine",), exclude=("football",))])
    texts = {
        "g1": ("Ukraine and Nato", "wire", now - timedelta(days=2)),
        "g2": ("Ukraine football final", "wire", now - timedelta(days=3)),
        "g3": ("Nato summit opens", "herald", now - timedelta(days=4)),
        "g4": ("Ukraine talks", "herald", now - timedelta(days=40)),
    }
    with Store.open(f"sqlite:///{tmp_path / 'db.sqlite'}") as store:
        for guid, (title, source, at) in texts.items():
            article = Article(f"https://{source}.example/{guid}", title, (title,), "")
            store.add_article_with_matches(source, guid, article, old.match(article), {}, at)
    config = write_config(tmp_path, "  - name: ukraine\n    query: Nato -football\n")
    assert main(["--config", str(config), "backtest", "ukraine", "--since", "30d"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("3 articles, 1 matched then, 2 would match now (+1 added, -0 lost)")
    assert lines[1].startswith("+ ") and '"Nato summit opens"' in lines[1]
    assert lines[1].endswith("[Nato]")
    config = write_config(tmp_path, "  - name: ukraine\n    keywords: [Kyiv]\n")
    assert main(["--config", str(config), "backtest", "ukraine"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("(+0 added, -1 lost)")
    assert lines[1].startswith("- ") and '"Ukraine and Nato"' in lines[1]
    assert main(["--config", str(config), "backtest", "ukraine", "--since", "soon"]) == 2
    assert main(["--config", str(config), "backtest", "nope"]) == 2
