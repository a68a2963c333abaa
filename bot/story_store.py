"""Stories in the database: which stored articles are copies of one story, and who ran them.

bot.store calls :func:`assign_story` in the transaction that stores a new article, and
:func:`story_alerted` before queueing an alert, so a chat gets one alert per story however many
outlets run it. The decision itself is pure (feeds.stories); this module only finds the articles
worth comparing (through `story_keys`) and records the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, insert, select

from bot.schema import article_stories, articles, outbox, story_keys
from feeds.models import Article
from feeds.stories import Fingerprint, closest_story, fingerprint, index_keys

STORY_WINDOW = timedelta(days=3)
"""How far back a new article looks for its story: copies of a story run within hours or days."""

MAX_CANDIDATES = 500
"""Bound on the fingerprints read per new article (the most recent first)."""

MAX_RELATED = 20
"""The most other reports of its story listed for one article (the earliest ones, ties by id).

Near-identical articles (wire copies, generated pages) can all land in one story; listing every
member for every member is quadratic in the story's size (5,000 copies: 25 million links, gigabytes
of memory), so the cap is applied in the query itself, never after reading the whole story."""

_KEY_CHUNK = 400


@dataclass(frozen=True, slots=True)
class StoryMate:
    """Another article of the same story: who ran it, where, and when we saw it."""

    article_id: int
    source: str
    url: str
    title: str
    published: datetime | None
    fetched_at: datetime


def assign_story(connection: Connection, article_id: int, article: Article, at: datetime) -> int:
    """Put a newly stored article into a story (an existing one, or its own); its story id."""
    new = fingerprint(article.title, article.text)
    keys = list(dict.fromkeys(index_keys(new)))
    candidates: list[tuple[int, Fingerprint]] = []
    if keys:
        sharing = (
            select(story_keys.c.article_id)
            .where(story_keys.c.key.in_(keys), story_keys.c.article_id != article_id)
            .distinct()
            .scalar_subquery()
        )
        rows = connection.execute(
            select(article_stories.c.story_id, article_stories.c.fingerprint)
            .where(
                article_stories.c.article_id.in_(sharing),
                article_stories.c.created_at >= at - STORY_WINDOW,
            )
            .order_by(article_stories.c.created_at.desc())
            .limit(MAX_CANDIDATES)
        ).all()
        candidates = [(row.story_id, Fingerprint.from_text(row.fingerprint)) for row in rows]
    story_id = closest_story(new, candidates) or article_id
    connection.execute(
        insert(article_stories).values(
            article_id=article_id, story_id=story_id, fingerprint=new.to_text(), created_at=at
        )
    )
    for start in range(0, len(keys), _KEY_CHUNK):
        connection.execute(
            insert(story_keys),
            [{"key": key, "article_id": article_id} for key in keys[start : start + _KEY_CHUNK]],
        )
    return story_id


def story_alerted(connection: Connection, story_id: int, chat_id: int) -> bool:
    """Has this chat already had an alert (in any state) for an article of this story?"""
    query = (
        select(outbox.c.id)
        .join_from(outbox, article_stories, outbox.c.article_id == article_stories.c.article_id)
        .where(article_stories.c.story_id == story_id, outbox.c.chat_id == chat_id)
        .limit(1)
    )
    return connection.execute(query).first() is not None


def story_of(connection: Connection, article_id: int) -> int | None:
    return connection.scalar(
        select(article_stories.c.story_id).where(article_stories.c.article_id == article_id)
    )


def also_reported_by(
    connection: Connection, article_id: int, limit: int = MAX_RELATED
) -> list[StoryMate]:
    """The other articles of this article's story, earliest first (empty if it has none): at
    most `limit` of them, the earliest, however big the story is."""
    story_id = story_of(connection, article_id)
    if story_id is None:
        return []
    rows = connection.execute(
        select(articles)
        .join_from(article_stories, articles, article_stories.c.article_id == articles.c.id)
        .where(article_stories.c.story_id == story_id, articles.c.id != article_id)
        .order_by(articles.c.fetched_at, articles.c.id)
        .limit(limit)
    ).all()
    return [
        StoryMate(row.id, row.source, row.url, row.title, row.published, row.fetched_at)
        for row in rows
    ]


def related_reports(
    connection: Connection, article_ids: list[int], limit: int = MAX_RELATED
) -> dict[int, tuple[tuple[str, str], ...]]:
    """For each article, (source, url) of the other articles of its story, earliest first (ties
    by id), at most `limit` of them: the "also reported by" links of feed entries and alerts.

    Two queries for a whole page of articles. The second reads only the earliest `limit + 1`
    members of each story (a window function, in SQLite and PostgreSQL alike): that is enough
    to give every article its `limit` earliest others, itself left out, and it keeps the work
    and the memory linear in the number of articles whatever the size of their stories.
    """
    if not article_ids:
        return {}
    story_of_article: dict[int, int] = {}
    for start in range(0, len(article_ids), _KEY_CHUNK):
        chunk = article_ids[start : start + _KEY_CHUNK]
        for row in connection.execute(
            select(article_stories.c.article_id, article_stories.c.story_id).where(
                article_stories.c.article_id.in_(chunk)
            )
        ):
            story_of_article[row.article_id] = row.story_id
    if not story_of_article:
        return {}
    by_story: dict[int, list[tuple[int, str, str]]] = {}
    stories = sorted(set(story_of_article.values()))
    for start in range(0, len(stories), _KEY_CHUNK):
        rank = (
            func.row_number()
            .over(
                partition_by=article_stories.c.story_id,
                order_by=(articles.c.fetched_at, articles.c.id),
            )
            .label("rank")
        )
        ranked = (
            select(
                article_stories.c.story_id, articles.c.id, articles.c.source, articles.c.url, rank
            )
            .join_from(article_stories, articles, article_stories.c.article_id == articles.c.id)
            .where(article_stories.c.story_id.in_(stories[start : start + _KEY_CHUNK]))
            .subquery()
        )
        members = connection.execute(
            select(ranked.c.story_id, ranked.c.id, ranked.c.source, ranked.c.url)
            .where(ranked.c.rank <= limit + 1)
            .order_by(ranked.c.story_id, ranked.c.rank)
        )
        for member in members:
            by_story.setdefault(member.story_id, []).append((member.id, member.source, member.url))
    return {
        article_id: tuple(
            (source, url)
            for other, source, url in by_story.get(story_id, [])
            if other != article_id
        )[:limit]
        for article_id, story_id in story_of_article.items()
    }
