"""The watch-language keys of a watchlist's settings, as code builds them (the loader's file
positions are covered by the broken-config golden files)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import WatchlistSettings
from feeds.models import Watchlist


def test_query_and_filters_reach_the_matcher() -> None:
    settings = WatchlistSettings.model_validate(
        {
            "name": "w",
            "query": "Kyiv AROUND(3) drone* /F-?35/",
            "regex": True,
            "languages": ["EN", "uk"],
            "min_mentions": 2,
        }
    )
    assert settings.to_watchlist() == Watchlist(
        "w",
        (),
        query="Kyiv AROUND(3) drone* /F-?35/",
        languages=("en", "uk"),
        min_mentions=2,
        allow_regex=True,
    )
    assert settings.describe() == "Articles matching Kyiv AROUND(3) drone* /F-?35/"


def test_term_lists_and_query_together() -> None:
    settings = WatchlistSettings.model_validate(
        {"name": "w", "keywords": ["Kyiv | Kiev"], "query": "drone*"}
    )
    assert settings.describe() == "Articles matching drone* and Kyiv | Kiev"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "w"}, 'missing required key "keywords"'),
        ({"name": "w", "query": "   "}, 'missing required key "keywords"'),
        ({"name": "w", "query": "Nato /otan/"}, "regular expressions are off"),
        ({"name": "w", "keywords": ["=US*x"]}, "may only end a term"),
        ({"name": "w", "keywords": ["/nato/"]}, "goes in a query"),
        ({"name": "w", "keywords": ["a"], "languages": ["english"]}, "bad language"),
    ],
)
def test_mistakes_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        WatchlistSettings.model_validate(data)
