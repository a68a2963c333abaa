"""bot.settings: YAML → Settings, and every mistake reported at file:line:column.

Broken configs are golden pairs under tests/fixtures/configs/broken: ``case.yaml`` and
``case.expected`` (the exact ``str(problem)`` lines). Adding a case is adding two files.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import (
    ConfigProblem,
    FeedSettings,
    FetchSettings,
    ServerSettings,
    Settings,
    SettingsError,
    SourceSettings,
    TelegramSettings,
    WatchlistSettings,
    load_settings,
    parse_duration,
)
from feeds.models import Watchlist

CONFIGS = Path(__file__).parents[1] / "fixtures" / "configs"
BROKEN = CONFIGS / "broken"
REPO = Path(__file__).parents[2]
GOLDEN_ENVIRON = {"PORT": "9000", "SET_BUT_EMPTY": ""}

MINIMAL = """\
sources:
  - name: a
    url: https://a.example/rss
watchlists:
  - name: w
    keywords: [x]
"""


@pytest.mark.parametrize("config", sorted(BROKEN.glob("*.yaml")), ids=lambda path: path.stem)
def test_broken_config_reports_every_problem(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(BROKEN)  # so the reported file name is just the case's name
    expected = config.with_suffix(".expected").read_text(encoding="utf-8").splitlines()

    with pytest.raises(SettingsError) as caught:
        load_settings(Path(config.name), GOLDEN_ENVIRON)

    assert [str(problem) for problem in caught.value.problems] == expected
    assert str(caught.value) == "\n".join(expected)


def test_every_broken_config_has_its_expected_problems() -> None:
    assert {path.stem for path in BROKEN.glob("*.yaml")} == {
        path.stem for path in BROKEN.glob("*.expected")
    }


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "absent.yaml", "cannot read: No such file or directory"),
        (lambda tmp: tmp, "cannot read: Is a directory"),
    ],
    ids=["missing", "directory"],
)
def test_unreadable_file_is_one_problem_at_the_start(
    tmp_path: Path, make: object, message: str
) -> None:
    assert callable(make)
    path: Path = make(tmp_path)
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    assert caught.value.problems == [ConfigProblem(str(path), 1, 1, message)]


def test_file_that_is_not_utf8_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("x]", "caf\xe9]").encode("latin-1"))
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {})
    (problem,) = caught.value.problems
    assert (problem.line, problem.column) == (1, 1)
    assert problem.message.startswith("cannot read: not UTF-8 text")


def test_full_config_loads_with_types_and_values() -> None:
    path = CONFIGS / "full.yaml"
    settings = load_settings(path, {"PORT": "9000", "TELEGRAM_BOT_TOKEN": "123:abc"})

    assert settings.path == path
    assert settings.database == "postgresql+psycopg://wirewatch@localhost/wirewatch"
    assert settings.server == ServerSettings(
        host="0.0.0.0", port=9000, public_url="https://news.example.org/wire"
    )
    assert settings.output_dir == Path("out/feeds")
    assert settings.telegram == TelegramSettings(
        token="123:abc", api_url="http://127.0.0.1:8081", admins=(111, 112)
    )
    assert settings.fetch == FetchSettings(
        user_agent="wirewatch-test/1.0 (+https://example.org/bot; price $5)",
        timeout=timedelta(minutes=1, seconds=30),
        max_bytes=1048576,
        concurrency=2,
    )
    assert settings.feeds == FeedSettings(max_entries=20)
    assert settings.sources == (
        SourceSettings(
            name="independent-world",
            url="https://www.independent.co.uk/news/world/rss",
            every=timedelta(minutes=10),
            full_text="auto",
        ),
        SourceSettings(
            name="bbc_world",
            title="BBC News – World",
            url="https://feeds.bbci.co.uk/news/world/rss.xml",
            every=timedelta(seconds=1),
            full_text="never",
        ),
        SourceSettings(name="reuters", url="https://example.org/reuters.xml"),
    )
    assert settings.sources[2].title == "reuters"  # defaults to the name
    ukraine, climate = settings.watchlists
    assert ukraine == WatchlistSettings(
        name="ukraine",
        title="Ukraine crisis",
        keywords=("Ukraine", "Nato", "Jake Sullivan"),
        all_of=("troops",),
        exclude=("football",),
        sources=("independent-world", "reuters"),
        chats=(222, -1001234567890),
    )
    assert climate.title == "climate"
    assert climate.keywords == ("climate change",)


def test_minimal_config_gets_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "minimal.yaml"
    path.write_text(MINIMAL, encoding="utf-8")

    settings = load_settings(path, {})

    assert settings.database == "sqlite:///var/wirewatch.sqlite3"
    assert settings.server == ServerSettings(
        host="127.0.0.1", port=8080, public_url="http://127.0.0.1:8080"
    )
    assert settings.output_dir == Path("var/feeds")
    assert settings.telegram == TelegramSettings(
        token="", api_url="https://api.telegram.org", admins=()
    )
    assert settings.fetch == FetchSettings(
        user_agent=None, timeout=timedelta(seconds=30), max_bytes=10485760, concurrency=8
    )
    assert settings.feeds.max_entries == 50
    (source,) = settings.sources
    assert (source.every, source.full_text) == (timedelta(minutes=15), "auto")
    (watchlist,) = settings.watchlists
    assert watchlist == WatchlistSettings(name="w", title="w", keywords=("x",))
    assert (watchlist.all_of, watchlist.exclude, watchlist.sources, watchlist.chats) == (
        (),
        (),
        (),
        (),
    )


@pytest.mark.parametrize(
    ("server", "public_url"),
    [
        ("{port: 9000}", "http://127.0.0.1:9000"),
        ("{host: '::1', port: 81}", "http://[::1]:81"),
        ("{port: 9000, public_url: 'https://x.example/'}", "https://x.example"),
    ],
)
def test_public_url_follows_the_listening_address_unless_given(
    tmp_path: Path, server: str, public_url: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"server: {server}\n{MINIMAL}", encoding="utf-8")
    assert load_settings(path, {}).server.public_url == public_url


@pytest.mark.parametrize(
    ("written", "expanded"),
    [
        ("plain", "plain"),
        ("${X}", "x-value"),
        ("a ${X} b ${X}", "a x-value b x-value"),
        ("${X:-fallback}", "x-value"),
        ("${UNSET:-fallback}", "fallback"),
        ("${UNSET:-}", ""),
        ("${UNSET:-a:b c}", "a:b c"),
        ("${EMPTY}", ""),
        ("${EMPTY:-fallback}", "fallback"),
        ("$$", "$"),
        ("$${X}", "${X}"),
        ("$$$${X}", "$${X}"),
        ("price $5", "price $5"),
        ("end$", "end$"),
    ],
)
def test_environment_interpolation(tmp_path: Path, written: str, expanded: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"fetch: {{user_agent: '{written}'}}\n{MINIMAL}", encoding="utf-8")
    settings = load_settings(path, {"X": "x-value", "EMPTY": ""})
    assert settings.fetch.user_agent == expanded


def test_environ_defaults_to_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WIREWATCH_TEST_TOKEN", "42:secret")
    path = tmp_path / "c.yaml"
    path.write_text(f"telegram: {{token: '${{WIREWATCH_TEST_TOKEN}}'}}\n{MINIMAL}")
    token = load_settings(path).telegram.token
    assert token.get_secret_value() == "42:secret"
    assert "42:secret" not in repr(load_settings(path))


def test_interpolated_values_are_validated_after_expansion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"server: {{port: '${{PORT}}'}}\n{MINIMAL}", encoding="utf-8")
    assert load_settings(path, {"PORT": "9001"}).server.port == 9001
    with pytest.raises(SettingsError) as caught:
        load_settings(path, {"PORT": "http"})
    assert [str(problem) for problem in caught.value.problems] == [
        f'{path}:1:16: server.port: expected an integer, got "http"'
    ]


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("30s", timedelta(seconds=30)),
        ("10m", timedelta(minutes=10)),
        ("1h", timedelta(hours=1)),
        ("1d", timedelta(days=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("2d12h", timedelta(days=2, hours=12)),
        ("1d2h3m4s", timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("90m", timedelta(minutes=90)),
        ("0s", timedelta(0)),
        (" 5m ", timedelta(minutes=5)),
    ],
)
def test_parse_duration(text: str, duration: timedelta) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    "text",
    ["", "10", "10 minutes", "1.5h", "30m1h", "1h1h", "-5m", "1w", "10M", "m", "1h 30m"],
)
def test_parse_duration_refuses_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"bad duration .* \(use e\.g\. 30s, 10m, 1h, 1d\)"):
        parse_duration(text)


def test_to_watchlist_gives_the_matcher_only_the_terms() -> None:
    settings = WatchlistSettings.model_validate(
        {"name": "w", "keywords": ["a", "b"], "all": ["c"], "exclude": ["d"], "chats": [1]}
    )
    assert settings.to_watchlist() == Watchlist(
        name="w", keywords=("a", "b"), all_of=("c",), exclude=("d",)
    )


def test_settings_are_frozen() -> None:
    settings = Settings(
        sources=(SourceSettings(name="a", url="https://a.example"),),
        watchlists=(WatchlistSettings(name="w", keywords=("x",)),),
    )
    with pytest.raises(ValidationError):
        settings.database = "sqlite://"


def test_settings_built_in_code_keep_the_cross_item_rules() -> None:
    with pytest.raises(ValidationError, match='unknown source "b"'):
        Settings(
            sources=(SourceSettings(name="a", url="https://a.example"),),
            watchlists=(WatchlistSettings(name="w", keywords=("x",), sources=("b",)),),
        )


def test_problem_and_error_render_like_a_compiler() -> None:
    problems = [
        ConfigProblem("c.yaml", 3, 5, "server.port: expected an integer, got true"),
        ConfigProblem("c.yaml", 9, 1, 'unknown key "x"'),
    ]
    error = SettingsError(problems)
    assert error.problems == problems
    assert str(error) == (
        'c.yaml:3:5: server.port: expected an integer, got true\nc.yaml:9:1: unknown key "x"'
    )


@pytest.mark.parametrize("name", ["wirewatch.yaml", "demo.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    path = REPO / "config" / name
    if not path.exists():
        pytest.skip(f"config/{name} is not written yet")
    settings = load_settings(path, {"TELEGRAM_BOT_TOKEN": "123456:TEST-TOKEN"})
    assert settings.sources
    assert settings.watchlists


def test_the_all_feed_name_is_reserved() -> None:
    from bot.server import ALL_FEED
    from bot.settings import RESERVED_FEED_NAMES

    assert ALL_FEED in RESERVED_FEED_NAMES
