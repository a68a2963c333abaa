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
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from feeds.errors import FetchError, FetchErrorKind
from feeds.extract import extract_article
from feeds.fetch import DEFAULT_USER_AGENT, PAGE_ACCEPT, fetch, make_client
from feeds.match import Matcher
from feeds.models import Article, FetchResult

from . import __version__, event_loop
from .instance_lock import AlreadyRunningError, single_process
from .logs import configure_logging, configure_logging_for, redact
from .settings import Settings, SettingsError, load_settings
from .sources_cli import add_arguments as add_source_arguments
from .sources_cli import add_command, sources_command
from .store import DatabaseUnavailableError

DEFAULT_CONFIG = "config/wirewatch.yaml"
EXIT_CONFIG = 2


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def build_parser() -> argparse.ArgumentParser:
    # The global options are accepted before or after the command (`wirewatch check --config X`
    # as well as `wirewatch --config X check`); SUPPRESS keeps a subcommand's unset copy from
    # overwriting a value given before it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"configuration file (default: $WIREWATCH_CONFIG or {DEFAULT_CONFIG})",
    )
    common.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="how much to log (default INFO)",
    )
    parser = argparse.ArgumentParser(
        prog="wirewatch",
        description="News watch and alert bot: sources → watchlists → Atom + Telegram.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"wirewatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("check", parents=[common], help="validate the configuration")

    run = commands.add_parser(
        "run", parents=[common], help="poll, serve feeds and send alerts until stopped"
    )
    run.add_argument("--once", action="store_true", help="poll every source once, then exit")

    clean = commands.add_parser(
        "clean", parents=[common], help="clean one article page (or a batch)"
    )
    clean.add_argument("page", nargs="?", help="a file path or an http(s) URL")
    clean.add_argument("--url", help="the page's URL, for a file (resolves relative links)")
    clean.add_argument("--json", action="store_true", help="print the article as JSON")
    clean.add_argument(
        "--batch",
        type=Path,
        metavar="MANIFEST",
        help='JSON lines {"id","path","url"}; prints one JSON line per page',
    )

    match = commands.add_parser(
        "match", parents=[common], help="match articles against the watchlists"
    )
    match.add_argument(
        "--batch",
        type=Path,
        metavar="ARTICLES",
        required=True,
        help='JSON lines {"id","title","text"[,"url","source"]}',
    )
    match.add_argument(
        "--explain",
        metavar="WATCHLIST",
        help="say why each article matches WATCHLIST or not, instead of JSON lines",
    )

    backtest = commands.add_parser(
        "backtest",
        parents=[common],
        help="replay stored articles against a watchlist's current definition",
    )
    backtest.add_argument("watchlist", help="the watchlist's name")
    backtest.add_argument(
        "--since", default="30d", help="how far back to replay, e.g. 7d or 12h (default 30d)"
    )

    stats = commands.add_parser(
        "stats", parents=[common], help="show database, table, outbox and feed sizes"
    )
    stats.add_argument("--json", action="store_true", help="print them as JSON")

    add_source_arguments(commands, common)

    commands.add_parser(
        "demo", parents=[common], help="run the whole pipeline offline on bundled sample sources"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = getattr(args, "config", None) or Path(
        os.environ.get("WIREWATCH_CONFIG") or DEFAULT_CONFIG
    )
    level = getattr(args, "log_level", None)
    # python-telegram-bot 22 warns on every RetryAfter unless told to use timedelta values, which
    # bot.telegram reads either way.
    os.environ.setdefault("PTB_TIMEDELTA", "1")
    configure_logging(level or "INFO")  # until the settings say which format and secrets
    # httpx logs every request at INFO; that is our own polling, already reported per source.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        return dispatch(args, config)
    except KeyboardInterrupt:  # Ctrl-C before the app's own signal handling is in place
        return 130
    except DatabaseUnavailableError as error:  # any command that opens the store
        print(f"wirewatch: {error}", file=sys.stderr)
        return 1
    except Exception:  # a bug: its traceback goes through the log (one line, secrets removed)
        logging.getLogger("wirewatch").exception("unexpected failure")
        return 1


def dispatch(args: argparse.Namespace, config: Path) -> int:
    command = args.command
    if command == "clean":
        return clean_command(args)
    try:
        settings = load_settings(config)
    except SettingsError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging_for(settings, getattr(args, "log_level", None))
    if command == "check":
        print(
            f"{config}: ok ({len(settings.sources)} sources, {len(settings.watchlists)} watchlists)"
        )
        return 0
    if command == "match" and args.explain:
        from .watch_commands import explain_command

        return explain_command(settings, read_json_lines(args.batch), args.explain, sys.stdout)
    if command == "match":
        return match_command(settings, args.batch, sys.stdout)
    if command == "backtest":
        from .settings import parse_duration
        from .watch_commands import backtest_command

        try:
            since = parse_duration(args.since)
        except ValueError as error:
            print(f"wirewatch backtest: --since: {error}", file=sys.stderr)
            return EXIT_CONFIG
        return backtest_command(settings, args.watchlist, since, sys.stdout)
    if command == "run":
        try:  # SQLite serves one process (bot.instance_lock); PostgreSQL any number
            with single_process(settings.database):
                return event_loop.run(run_command(settings, once=args.once))
        except AlreadyRunningError as error:
            print(f"wirewatch: cannot start: {error}", file=sys.stderr)
            return 1
    if command == "sources":
        return sources_command(settings, config, args, sys.stdout)
    if command == "stats":
        from .stats import stats_command

        return stats_command(settings, args.json, sys.stdout)
    if command == "add":
        return add_command(settings, config, args, sys.stdout)
    if command == "demo":
        from .demo import run_demo

        return asyncio.run(run_demo(settings))
    raise AssertionError(command)


async def run_command(settings: Settings, *, once: bool) -> int:
    from sqlalchemy.exc import OperationalError

    from .app import App, StartupError, stop_on_signals
    from .database_faults import database_problem

    try:
        async with App(settings) as app:
            if not once:
                stop = asyncio.Event()
                with stop_on_signals(stop):
                    await app.run_forever(stop)
                return 0
            report = await app.run_once()
    except StartupError as error:
        print(redact(f"wirewatch: cannot start: {error}"), file=sys.stderr)
        return 1
    except OperationalError as error:  # e.g. locked at start-up: one line, no traceback
        problem = database_problem(error) or str(error)
        print(redact(f"wirewatch: cannot start: {problem}"), file=sys.stderr)
        return 1
    for poll in report.failed_sources:
        print(redact(f"source {poll.source}: FAILED: {poll.error}"), file=sys.stderr)
    verb = "logged" if app.alert_outcome == "logged" else "sent"
    print(
        f"polled {len(report.polls)} sources ({len(report.failed_sources)} failed), "
        f"{sum(p.new_articles for p in report.polls)} new articles, "
        f"{sum(p.new_matches for p in report.polls)} new matches, "
        f"{report.delivery.sent} alerts {verb}, {report.delivery.failed} not sent"
    )
    return 0


def clean_command(args: argparse.Namespace) -> int:
    if args.batch:
        return clean_batch(args.batch, sys.stdout)
    if not args.page:
        print("wirewatch clean: give a PATH or URL, or --batch MANIFEST", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.page.startswith(("http://", "https://")):
            content, url = asyncio.run(fetch_page(args.page))
        else:
            path = Path(args.page)
            content, url = path.read_bytes(), args.url or path.resolve().as_uri()
    except (OSError, FetchError) as error:
        print(f"wirewatch clean: {args.page}: {error}", file=sys.stderr)
        return 1
    article = extract_article(content, url)
    if args.json:
        print(json.dumps(article_json(article), ensure_ascii=False, indent=2))
    else:
        print(article.title, "", article.text, sep="\n")
    return 0


def clean_batch(manifest: Path, out: TextIO) -> int:
    """One output line per manifest line, in order; a page that cannot be read gets a line with
    an "error" instead of stopping the batch."""
    for record in read_json_lines(manifest):
        try:
            path = Path(record["path"])
            content = path.read_bytes()
        except (KeyError, TypeError, OSError) as error:
            line = {"id": record["id"], "title": "", "text": "", "error": describe(error)}
        else:
            article = extract_article(content, record.get("url") or path.as_uri())
            line = {"id": record["id"], **article_json(article)}
        print(json.dumps(line, ensure_ascii=False), file=out)
    return 0


def describe(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f'missing "{error.args[0]}"'
    return f"{type(error).__name__}: {error}"


async def fetch_page(url: str) -> tuple[bytes, str]:
    async with make_client(DEFAULT_USER_AGENT) as client:
        result = await fetch(client, url, accept=PAGE_ACCEPT)
    if not isinstance(result, FetchResult):  # no validators were sent, so no 304 can come back
        raise FetchError(FetchErrorKind.HTTP_STATUS, "unexpected 304", url=url, status=304)
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
        "updated": article.updated.isoformat() if article.updated else None,
        "image": article.image,
    }


def match_command(settings: Settings, path: Path, out: TextIO) -> int:
    matcher = Matcher([w.to_watchlist() for w in settings.watchlists])
    from .watch_commands import article_from_record

    for number, record in enumerate(read_json_lines(path), start=1):
        try:  # optional "standfirst" and "language" are read too, for the watchlists' filters
            article, source = article_from_record(record)
        except ValueError as error:
            raise SystemExit(f"{path}: record {number}: {error}") from None
        for match in matcher.match(article, source):
            line = {"id": record["id"], "watchlist": match.watchlist, "terms": list(match.terms)}
            print(json.dumps(line, ensure_ascii=False), file=out)
    return 0


def read_json_lines(path: Path) -> Iterator[dict[str, Any]]:
    try:
        lines = path.open(encoding="utf-8")
    except OSError as error:
        raise SystemExit(f"{path}: cannot read: {error.strerror}") from None
    with lines:
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
