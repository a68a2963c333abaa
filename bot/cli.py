"""The `wirewatch` command. Parses arguments, loads settings, calls the app; nothing else.

Exit codes: 0 success; 2 invalid configuration or usage (with one FILE:LINE:COL line per problem);
1 an unexpected failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from feeds.extract import extract_article
from feeds.match import Matcher
from feeds.models import Article

from . import __version__
from .settings import Settings, SettingsError, load_settings

DEFAULT_CONFIG = "config/wirewatch.yaml"
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wirewatch",
        description="News watch and alert bot: sources → watchlists → Atom + Telegram.",
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=Path(os.environ.get("WIREWATCH_CONFIG") or DEFAULT_CONFIG),
        help=f"configuration file (default: $WIREWATCH_CONFIG or {DEFAULT_CONFIG})",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--version", action="version", version=f"wirewatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("check", help="validate the configuration")

    run = commands.add_parser("run", help="poll, serve feeds and send alerts until stopped")
    run.add_argument("--once", action="store_true", help="poll every source once, then exit")

    clean = commands.add_parser("clean", help="clean one article page (or a batch)")
    clean.add_argument("page", nargs="?", help="a file path or an http(s) URL")
    clean.add_argument("--url", help="the page's URL, for a file (resolves relative links)")
    clean.add_argument("--json", action="store_true", help="print the article as JSON")
    clean.add_argument(
        "--batch",
        type=Path,
        metavar="MANIFEST",
        help='JSON lines {"id","path","url"}; prints one JSON line per page',
    )

    match = commands.add_parser("match", help="match articles against the watchlists")
    match.add_argument(
        "--batch",
        type=Path,
        metavar="ARTICLES",
        required=True,
        help='JSON lines {"id","title","text"[,"url","source"]}',
    )

    commands.add_parser("demo", help="run the whole pipeline offline on bundled sample sources")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # python-telegram-bot 22 warns on every RetryAfter unless told to use timedelta values, which
    # bot.telegram reads either way.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs every request at INFO; that is our own polling, already reported per source.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    command = args.command
    if command == "clean":
        return clean_command(args)
    try:
        settings = load_settings(args.config)
    except SettingsError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    if command == "check":
        print(
            f"{args.config}: ok ({len(settings.sources)} sources, "
            f"{len(settings.watchlists)} watchlists)"
        )
        return 0
    if command == "match":
        return match_command(settings, args.batch, sys.stdout)
    if command == "run":
        return asyncio.run(run_command(settings, once=args.once))
    if command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(settings))
    raise AssertionError(command)


async def run_command(settings: Settings, *, once: bool) -> int:
    from .app import App

    async with App(settings) as app:
        if once:
            report = await app.run_once()
            for poll in report.polls:
                if poll.error:
                    print(f"source {poll.source}: FAILED: {poll.error}", file=sys.stderr)
            print(
                f"polled {len(report.polls)} sources ({len(report.failed_sources)} failed), "
                f"{sum(p.new_articles for p in report.polls)} new articles, "
                f"{sum(p.new_matches for p in report.polls)} new matches, "
                f"{report.delivery.sent} alerts sent, {report.delivery.failed} not sent "
                "(kept for the next run)"
            )
            return 0
        stop = asyncio.Event()
        with stop_on_signals(stop):
            await app.run_forever(stop)
    return 0


class stop_on_signals:  # lower case: it is used as a context manager and reads like one
    """SIGINT and SIGTERM set `stop`, so shutdown runs the same clean path whatever the cause."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)

    def __exit__(self, *_: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)


def clean_command(args: argparse.Namespace) -> int:
    if args.batch:
        for record in read_json_lines(args.batch):
            path = Path(record["path"])
            article = extract_article(path.read_bytes(), record.get("url") or path.as_uri())
            print(json.dumps({"id": record["id"], **article_json(article)}, ensure_ascii=False))
        return 0
    if not args.page:
        print("wirewatch clean: give a PATH or URL, or --batch MANIFEST", file=sys.stderr)
        return EXIT_CONFIG
    if args.page.startswith(("http://", "https://")):
        content, url = asyncio.run(fetch_page(args.page))
    else:
        path = Path(args.page)
        content, url = path.read_bytes(), args.url or path.resolve().as_uri()
    article = extract_article(content, url)
    if args.json:
        print(json.dumps(article_json(article), ensure_ascii=False, indent=2))
    else:
        print(article.title, "", article.text, sep="\n")
    return 0


async def fetch_page(url: str) -> tuple[bytes, str]:
    from feeds.fetch import DEFAULT_USER_AGENT, PAGE_ACCEPT, fetch, make_client
    from feeds.models import FetchResult

    async with make_client(DEFAULT_USER_AGENT) as client:
        result = await fetch(client, url, accept=PAGE_ACCEPT)
    assert isinstance(result, FetchResult)
    return result.content, result.url


def article_json(article: Article) -> dict[str, Any]:
    return {
        "title": article.title,
        "text": article.text,
        "author": article.author,
        "published": article.published.isoformat() if article.published else None,
        "url": article.url,
        "standfirst": article.standfirst,
        "language": article.language,
        "html": article.html,
        "empty_reason": article.empty_reason,
    }


def match_command(settings: Settings, path: Path, out: TextIO) -> int:
    matcher = Matcher([w.to_watchlist() for w in settings.watchlists])
    for record in read_json_lines(path):
        article = Article(
            url=record.get("url") or "",
            title=record.get("title") or "",
            paragraphs=tuple(p for p in (record.get("text") or "").split("\n\n") if p.strip()),
            html="",
        )
        for match in matcher.match(article, record.get("source")):
            line = {"id": record["id"], "watchlist": match.watchlist, "terms": list(match.terms)}
            print(json.dumps(line, ensure_ascii=False), file=out)
    return 0


def read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise SystemExit(f"{path}:{number}: not a JSON object: {error}") from None
            if not isinstance(record, dict) or "id" not in record:
                raise SystemExit(f'{path}:{number}: expected a JSON object with an "id"')
            yield record
