"""`wirewatch sources` (health table, OPML import/export) and `wirewatch add`, run as a user runs
them, against loopback sites and real config files."""

from __future__ import annotations

from pathlib import Path

from bot.sample_site import Response, SampleSite
from tests.conftest import run_cli

CONFIG = """\
# wirewatch configuration (hand-written; comments must survive edits)
database: sqlite:///{db}
output_dir: {out}

sources:
  # the first outlet
  - name: first
    url: "{first}"   # keep this comment
    every: 5m

watchlists:
  - name: kyiv
    keywords: [Kyiv]
"""
RSS = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
    b"<item><guid>1</guid><title>Kyiv</title><link>http://127.0.0.1:9/a</link>"
    b"<description>About Kyiv.</description></item></channel></rss>"
)


def config(tmp_path: Path, first: str) -> Path:
    path = tmp_path / "wirewatch.yaml"
    text = CONFIG.format(db=tmp_path / "db.sqlite3", out=tmp_path / "feeds", first=first)
    path.write_text(text, encoding="utf-8")
    return path


def test_opml_import_appends_new_sources_and_keeps_comments(tmp_path: Path) -> None:
    path = config(tmp_path, "https://first.example/feed")
    opml = tmp_path / "export.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><body>'
        '<outline text="First again" xmlUrl="https://first.example/feed"/>'
        '<outline text="Kyiv Independent" xmlUrl="https://kyivindependent.com/feed/"/>'
        '<outline text="Kyiv Independent" xmlUrl="https://kyivindependent.com/news/feed/"/>'
        "</body></opml>",
        encoding="utf-8",
    )
    result = run_cli("--config", str(path), "sources", "import", str(opml))
    assert result.returncode == 0, result.stderr
    assert "added 2 source(s) (kyiv-independent, kyiv-independent-2); 1 already configured" in (
        result.stdout
    )
    text = path.read_text(encoding="utf-8")
    assert text.startswith(CONFIG.splitlines()[0])
    assert "# keep this comment" in text and "# the first outlet" in text
    assert run_cli("--config", str(path), "check").returncode == 0
    again = run_cli("--config", str(path), "sources", "import", str(opml))
    assert "added 0 source(s); 3 already configured" in again.stdout


def test_opml_export(tmp_path: Path) -> None:
    path = config(tmp_path, "https://first.example/feed")
    result = run_cli("--config", str(path), "sources", "export")
    assert result.returncode == 0
    assert (
        '<outline type="rss" text="first" title="first" xmlUrl="https://first.example/feed"/>'
        in (result.stdout)
    )


def test_an_unreadable_opml_file_changes_nothing(tmp_path: Path) -> None:
    path = config(tmp_path, "https://first.example/feed")
    before = path.read_text(encoding="utf-8")
    (tmp_path / "bad.opml").write_text("<html/>", encoding="utf-8")
    result = run_cli("--config", str(path), "sources", "import", str(tmp_path / "bad.opml"))
    assert result.returncode == 1 and "not <opml>" in result.stderr
    assert path.read_text(encoding="utf-8") == before


def test_add_discovers_and_appends_the_chosen_feed(tmp_path: Path) -> None:
    with SampleSite() as site:
        site.set_file(
            "/",
            b'<html><head><link rel="alternate" type="application/rss+xml" title="World News"'
            b' href="/world.xml"><link rel="alternate" type="application/atom+xml"'
            b' href="/all.atom"></head></html>',
            "text/html",
        )
        path = config(tmp_path, "https://first.example/feed")
        result = run_cli("--config", str(path), "add", site.url("/"), "--pick", "1")
        world, everything = site.url("/world.xml"), site.url("/all.atom")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[:2] == [
        f"1. [rss] {world}  World News",
        f"2. [atom] {everything}",
    ]
    text = path.read_text(encoding="utf-8")
    assert f"  - name: world-news\n    title: World News\n    url: {world}" in text
    assert "# keep this comment" in text


def test_add_reports_a_site_without_feeds(tmp_path: Path) -> None:
    with SampleSite() as site:
        site.set_file("/", b"<html><body>nothing</body></html>", "text/html")
        path = config(tmp_path, "https://first.example/feed")
        result = run_cli("--config", str(path), "add", site.url("/"))
    assert result.returncode == 1 and "no feed found" in result.stderr


def test_sources_table_after_a_run(tmp_path: Path) -> None:
    with SampleSite() as site:
        site.set_file("/feed.xml", RSS, "application/rss+xml")
        site.route("/gone.xml", lambda request: Response(410, {}, b""))
        path = config(tmp_path, site.url("/feed.xml"))
        text = path.read_text(encoding="utf-8").replace(
            "\nwatchlists:",
            f"  - name: gone\n    url: {site.url('/gone.xml')}\n\nwatchlists:",
        )
        path.write_text(text.replace("every: 5m", "every: 5m\n    full_text: never"), "utf-8")
        assert run_cli("--config", str(path), "run", "--once").returncode == 0
        assert run_cli("--config", str(path), "run", "--once").returncode == 0
    result = run_cli("--config", str(path), "sources")
    assert result.returncode == 0, result.stderr
    [header, first, gone] = result.stdout.splitlines()
    assert header.split()[:2] == ["SOURCE", "STATUS"]
    assert first.split()[:2] == ["first", "ok"] and "50%" in first  # the second poll was a 304
    assert gone.split()[:2] == ["gone", "disabled"] and "gone (HTTP 410)" in gone
