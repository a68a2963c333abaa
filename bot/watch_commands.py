"""The watch-language commands: `wirewatch match --explain` and `wirewatch backtest`.

Both answer "what does this watchlist do?" before a user trusts it with alerts: --explain walks the
rule tree for given articles and says which part held or failed; backtest replays the articles
already stored against the watchlist as it is defined now and lists what that would add to or
remove from what was matched when they arrived.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from feeds.match import Matcher
from feeds.models import Article

from .settings import Settings
from .store import Store, StoredArticle


def article_from_record(record: dict[str, Any]) -> tuple[Article, str | None]:
    """An article (and its source name) from a JSON line of `match --batch`."""
    fields = {
        key: record.get(key) or ""
        for key in ("title", "text", "url", "source", "standfirst", "language")
    }
    if not all(isinstance(value, str) for value in fields.values()):
        raise ValueError("title, text, url, source, standfirst and language must be text")
    article = Article(
        url=fields["url"],
        title=fields["title"],
        paragraphs=tuple(p for p in fields["text"].split("\n\n") if p.strip()),
        html="",
        standfirst=fields["standfirst"] or None,
        language=fields["language"] or None,
    )
    return article, fields["source"] or None


def explain_command(
    settings: Settings, records: Iterator[dict[str, Any]], watchlist: str, out: TextIO
) -> int:
    """For each article, the watchlist's verdict and the reasons, one line per part of the rule."""
    names = [w.name for w in settings.watchlists]
    if watchlist not in names:
        print(
            f'wirewatch match: no watchlist "{watchlist}" (watchlists: {", ".join(names)})',
            file=sys.stderr,
        )
        return 2
    matcher = Matcher([w.to_watchlist() for w in settings.watchlists if w.name == watchlist])
    for number, record in enumerate(records, start=1):
        try:
            article, source = article_from_record(record)
        except ValueError as error:
            raise SystemExit(f"record {number}: {error}") from None
        print(f"article {record['id']}:", file=out)
        for line in matcher.explain(article, watchlist, source):
            print(f"  {line}", file=out)
    return 0


@dataclass(frozen=True, slots=True)
class Backtest:
    watchlist: str
    articles: int
    before: int
    now: int
    added: list[tuple[StoredArticle, tuple[str, ...]]]
    """Articles that match now but were not matched when they arrived, with the terms found."""
    lost: list[StoredArticle]
    """Articles matched when they arrived that the current definition no longer matches."""


def backtest(store: Store, settings: Settings, watchlist: str, since: datetime) -> Backtest:
    """Replay the stored articles fetched since `since` against the current definition."""
    [definition] = [w.to_watchlist() for w in settings.watchlists if w.name == watchlist]
    matcher = Matcher([definition])
    before = store.matched_article_ids(watchlist, since)
    added: list[tuple[StoredArticle, tuple[str, ...]]] = []
    now: set[int] = set()
    stored = store.articles_since(since)
    for item in stored:
        article = Article(
            url=item.url,
            title=item.title,
            paragraphs=tuple(p for p in item.text.split("\n\n") if p.strip()),
            html=item.html,
        )
        found = matcher.match(article, item.source)
        if found:
            now.add(item.id)
            if item.id not in before:
                added.append((item, found[0].terms))
    lost = [item for item in stored if item.id in before and item.id not in now]
    return Backtest(watchlist, len(stored), len(before), len(now), added, lost)


def backtest_command(
    settings: Settings, watchlist: str, since: timedelta, out: TextIO, now: datetime | None = None
) -> int:
    names = [w.name for w in settings.watchlists]
    if watchlist not in names:
        print(
            f'wirewatch backtest: no watchlist "{watchlist}" (watchlists: {", ".join(names)})',
            file=sys.stderr,
        )
        return 2
    start = (now or datetime.now(UTC)) - since
    with Store.open(settings.database) as store:
        result = backtest(store, settings, watchlist, start)
    print(
        f"watchlist {watchlist}, articles fetched since {start:%Y-%m-%d %H:%M} UTC: "
        f"{result.articles} articles, {result.before} matched then, {result.now} would match now "
        f"(+{len(result.added)} added, -{len(result.lost)} lost)",
        file=out,
    )
    for item, terms in result.added:
        print(f"+ {_line(item)}  [{', '.join(terms)}]", file=out)
    for item in result.lost:
        print(f"- {_line(item)}", file=out)
    return 0


def _line(item: StoredArticle) -> str:
    when = item.published or item.fetched_at
    return f"{when:%Y-%m-%d} {item.source}: {json.dumps(item.title, ensure_ascii=False)} {item.url}"
