"""A watchlist routes to each chat and forum topic once, in settings built by code too (the
loader's located form is the golden pair tests/fixtures/configs/broken/duplicate_route)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import ChatRoute, Settings, SourceSettings, WatchlistSettings


def settings_with(*routes: ChatRoute) -> Settings:
    return Settings(
        path=Path("w.yaml"),
        sources=(SourceSettings(name="a", url="https://a.example/rss"),),
        watchlists=(WatchlistSettings(name="w", keywords=("x",), chats=routes),),
    )


def test_two_topics_of_one_chat_are_two_routes() -> None:
    routes = (ChatRoute(chat=-100), ChatRoute(chat=-100, thread=3), ChatRoute(chat=-100, thread=4))
    assert settings_with(*routes).watchlists[0].chats == routes


def test_the_same_topic_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"duplicate route to chat -100, topic 3"):
        settings_with(ChatRoute(chat=-100, thread=3), ChatRoute(chat=-100, thread=3))
