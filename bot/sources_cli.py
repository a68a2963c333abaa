"""`wirewatch sources [list|import FILE|export]` and `wirewatch add URL`: the source-management
commands, kept out of bot.cli so that it stays a thin dispatcher."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from feeds.discover import FeedLink, discover_feeds
from feeds.errors import FetchError
from feeds.fetch import DEFAULT_USER_AGENT, FetchLimits, make_client
from feeds.opml import OpmlError, Outline, parse_opml, render_opml

from .health import WINDOW, render_table, source_health
from .settings import Settings, SettingsError
from .source_config import NewSource, add_sources
from .store import Store

__all__ = ["add_arguments", "add_command", "sources_command"]


def add_arguments(
    commands: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    """Register `sources` and `add` on the main parser."""
    sources = commands.add_parser(
        "sources", parents=[common], help="list sources with their health; import or export OPML"
    )
    actions = sources.add_subparsers(dest="sources_action", metavar="ACTION")
    actions.add_parser("list", parents=[common], help="the health table (the default)")
    importing = actions.add_parser("import", parents=[common], help="add the feeds of an OPML file")
    importing.add_argument("opml", type=Path, help="an OPML file from any feed reader")
    exporting = actions.add_parser("export", parents=[common], help="print the sources as OPML")
    exporting.add_argument("--output", "-o", type=Path, help="write to this file instead")

    add = commands.add_parser(
        "add", parents=[common], help="discover a site's feeds and add one to the configuration"
    )
    add.add_argument("url", help="a site's home page (or a feed URL)")
    add.add_argument("--name", default="", help="the source's name (default: from its title)")
    add.add_argument(
        "--pick", type=int, default=1, metavar="N", help="which discovered feed to add (default 1)"
    )


def sources_command(settings: Settings, config: Path, args: argparse.Namespace, out: TextIO) -> int:
    action = getattr(args, "sources_action", None) or "list"
    if action == "list":
        print(health_table(settings, datetime.now(UTC)), file=out)
        return 0
    if action == "export":
        document = render_opml(
            "wirewatch sources",
            [Outline(s.url, s.title) for s in settings.sources if s.type == "feed"],
        )
        if args.output:
            args.output.write_bytes(document)
        else:
            out.write(document.decode("utf-8"))
        return 0
    try:
        outlines = parse_opml(args.opml.read_bytes())
    except (OSError, OpmlError) as error:
        print(f"wirewatch sources import: {args.opml}: {error}", file=sys.stderr)
        return 1
    return _write(config, [NewSource(o.xml_url, o.title) for o in outlines], len(outlines), out)


def health_table(settings: Settings, now: datetime) -> str:
    with Store.open(settings.database) as store:
        states = {state.name: state for state in store.source_states()}
        activity = store.source_activity(now - WINDOW)
        published = {s.name: store.recent_publication_times(s.name) for s in settings.sources}
    configured = [(s.name, s.url) for s in settings.sources]
    return render_table(source_health(configured, states, activity, published, now), now)


def add_command(settings: Settings, config: Path, args: argparse.Namespace, out: TextIO) -> int:
    try:
        found = asyncio.run(_discover(settings, args.url))
    except FetchError as error:
        print(f"wirewatch add: {args.url}: {error}", file=sys.stderr)
        return 1
    if not found:
        print(
            f"wirewatch add: {args.url}: no feed found on the page or at common paths",
            file=sys.stderr,
        )
        return 1
    for number, link in enumerate(found, start=1):
        print(
            f"{number}. [{link.kind}] {link.url}" + (f"  {link.title}" if link.title else ""),
            file=out,
        )
    if not 1 <= args.pick <= len(found):
        print(f"wirewatch add: --pick must be between 1 and {len(found)}", file=sys.stderr)
        return 2
    chosen = found[args.pick - 1]
    return _write(config, [NewSource(chosen.url, chosen.title, args.name)], 1, out)


async def _discover(settings: Settings, url: str) -> list[FeedLink]:
    limits = FetchLimits(
        total_timeout=settings.fetch.timeout.total_seconds(), max_bytes=settings.fetch.max_bytes
    )
    async with make_client(settings.fetch.user_agent or DEFAULT_USER_AGENT, limits) as client:
        return await discover_feeds(client, url, limits=limits)


def _write(config: Path, new: list[NewSource], offered: int, out: TextIO) -> int:
    try:
        added = add_sources(config, new)
    except SettingsError as error:
        for problem in error.problems:
            print(problem, file=sys.stderr)
        return 2
    skipped = offered - len(added)
    print(
        f"{config}: added {len(added)} source(s)"
        + (f" ({', '.join(added)})" if added else "")
        + (f"; {skipped} already configured" if skipped else ""),
        file=out,
    )
    return 0
