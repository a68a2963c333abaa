"""YAML → validated, typed settings, with every problem located at a file, line and column.

The loader works in four passes so that one run reports *all* the mistakes in a file:

1. read and parse the YAML with ruamel's round-trip loader, which remembers where every mapping key
   and sequence item sits (``node.lc``);
2. copy the tree into plain Python values, expanding ``${VAR}`` / ``${VAR:-default}`` in every
   string value (``$$`` is a literal dollar);
3. validate the plain values with the frozen pydantic models below and map each pydantic error
   ``loc`` back to the ruamel node it came from, rewording the message in plain words;
4. check what crosses list items (duplicate names, watchlists naming unknown sources).

Nothing happens at import time: call :func:`load_settings` once at start-up and pass the result
down. Only this module knows about YAML and environment variables.
"""

from __future__ import annotations

import difflib
import os
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, ReusedAnchorWarning, YAMLError

from feeds.listing import check_selector
from feeds.models import Watchlist

from .database_url import DatabaseUrlError
from .database_url import parse as parse_database_url
from .rhythm import RhythmError, parse_quiet_hours, parse_schedule
from .watch_settings import check_language, check_query, check_term, query_position
from .yaml_bounds import expansion_problem, flow_depth_problem

__all__ = [
    "AdminAlertSettings",
    "ChatRoute",
    "ConfigProblem",
    "FeedSettings",
    "FetchSettings",
    "LoggingSettings",
    "RetentionSettings",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "SourceSettings",
    "TelegramSettings",
    "WatchlistSettings",
    "load_settings",
    "parse_duration",
]


# ── problems ──────────────────────────────────────────────────────────────────────────────────


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config file, located the way editors and compilers do (1-based)."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class SettingsError(Exception):
    """The config cannot be used; ``problems`` lists every mistake found, in file order."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# ── durations ────────────────────────────────────────────────────────────────────────────────

_DURATION = re.compile(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")
_DURATION_HINT = "use e.g. 30s, 10m, 1h, 1d"


def parse_duration(text: str) -> timedelta:
    """Read a compact duration such as ``30s``, ``10m``, ``1h``, ``1d`` or ``1h30m``.

    Units go from largest to smallest, each at most once, with whole numbers only: the short form
    keeps configs readable and leaves no doubt whether ``1.5m`` or ``10 minutes`` was meant.
    """
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groups()):
        raise ValueError(f'bad duration "{text}" ({_DURATION_HINT})')
    days, hours, minutes, seconds = (int(group or 0) for group in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:  # found by tests/test_fuzz_config.py: "99999999999999999999d"
        raise ValueError(f'duration "{text}" is too long (at most 999999999 days)') from None


# ── field types ──────────────────────────────────────────────────────────────────────────────

_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")


def _check_slug(value: str) -> str:
    if not _SLUG.fullmatch(value):
        raise PydanticCustomError(
            "slug",
            'bad name "{name}" (use lowercase letters, digits, "-" and "_", '
            "starting with a letter or digit)",
            {"name": value},
        )
    return value


def _check_http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise PydanticCustomError(
            "http_url", 'expected an http:// or https:// URL, got "{url}"', {"url": value}
        )
    return value.rstrip("/")


def _check_database_url(value: str) -> str:
    """Refuse what bot.database_url cannot open, without ever echoing a password."""
    try:
        parse_database_url(value)
    except DatabaseUrlError as error:
        raise PydanticCustomError("database_url", str(error)) from None
    return value


def _to_duration(value: object) -> object:
    """Let YAML strings through :func:`parse_duration`; bare numbers are refused as ambiguous."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", str(exc)) from None
    raise PydanticCustomError(
        "duration_type",
        "expected a duration such as 30s, 10m, 1h or 1d, got {input}",
        {"input": _describe(value)},
    )


def _refuse_bool(value: object) -> object:
    """YAML ``true`` is a Python int too; an id or a port must never silently become 1."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "")
    return value


def _at_least_one_second(value: timedelta) -> timedelta:
    if value < timedelta(seconds=1):
        raise PydanticCustomError("duration_too_short", "must be at least 1s")
    return value


Slug = Annotated[str, AfterValidator(_check_slug)]
HttpUrl = Annotated[str, AfterValidator(_check_http_url)]
Integer = Annotated[int, BeforeValidator(_refuse_bool)]
Duration = Annotated[timedelta, BeforeValidator(_to_duration), AfterValidator(_at_least_one_second)]


def _check_term(term: str) -> str:
    return check_term(term)  # the term syntax of bot.watch_settings / feeds.query


Term = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_check_term)
]


# ── models ───────────────────────────────────────────────────────────────────────────────────


class _Section(BaseModel):
    """Frozen, and strict about spelling: an unknown key is almost always a typo."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class ServerSettings(_Section):
    """The HTTP feed server, and the address readers reach it at (for links in feeds and OPML)."""

    host: str = "127.0.0.1"
    port: Annotated[Integer, Field(ge=1, le=65535)] = 8080
    public_url: HttpUrl = "http://127.0.0.1:8080"
    """Without a trailing slash, so paths can be appended with ``f"{public_url}/..."``."""

    @model_validator(mode="before")
    @classmethod
    def _derive_public_url(cls, data: object) -> object:
        """Default public_url to the listening address so changing only the port just works."""
        if isinstance(data, dict) and "public_url" not in data:
            host = data.get("host", "127.0.0.1")
            port = data.get("port", 8080)
            if isinstance(host, str) and isinstance(port, int) and not isinstance(port, bool):
                shown = f"[{host}]" if ":" in host else host
                return {**data, "public_url": f"http://{shown}:{port}"}
        return data


class TelegramSettings(_Section):
    """The bot's credentials and who may command it. An empty token means alerts are only logged."""

    token: SecretStr = SecretStr("")
    """A SecretStr, so that printing the settings (a log line, a traceback) never shows it."""
    api_url: HttpUrl = "https://api.telegram.org"
    """Requests go to ``{api_url}/bot{token}/{method}``; tests point it at a fake server."""
    admins: tuple[Integer, ...] = ()
    """Telegram user ids allowed to use admin commands."""
    burst_threshold: Annotated[Integer, Field(ge=0)] = 10
    """A chat with this many alerts waiting to go one by one gets them as digests instead, until
    the burst of news is over (bot.digest); 0: never."""
    burst_every: Duration = timedelta(minutes=15)
    """How often a chat in a burst gets its digest."""
    admin_chat: Integer | None = None
    """Where admin alerts go (bot.admin_alerts); None: they are only logged."""
    max_pending_per_chat: Annotated[Integer, Field(ge=10)] = 1000
    """Alerts waiting for one chat; past it the oldest are folded into one digest (bot.bounds)."""


class FetchSettings(_Section):
    """Limits for every HTTP request to sources and article pages."""

    user_agent: str | None = None
    """None means the built-in honest User-Agent."""
    timeout: Duration = timedelta(seconds=30)
    """Total time per request, connection to last byte."""
    max_bytes: Annotated[Integer, Field(ge=1)] = 10 * 1024 * 1024
    concurrency: Annotated[Integer, Field(ge=1)] = 8
    """Requests in flight at once, all hosts together."""
    per_host: Annotated[Integer, Field(ge=1)] = 2
    """Requests in flight at once to one host (feeds and article pages alike)."""
    host_delay: Annotated[timedelta, BeforeValidator(_to_duration)] = timedelta(seconds=1)
    """Least time between the starts of two requests to one host (``0s`` for none)."""
    backoff_cap: Duration = timedelta(hours=6)
    """Longest pause between retries of a failing source; it keeps retrying at this pace."""
    robots: bool = True
    """Obey robots.txt for article pages (feeds are always fetched)."""
    allow_private_addresses: bool = False
    """Let sources added from chat, redirects and article links reach loopback, private,
    link-local and other non-public addresses (feeds.netguard); a source's own configured host
    may always be reached."""
    max_entries_per_poll: Annotated[Integer, Field(ge=1)] = 200
    """Entries taken from one poll of a source, newest first (bot.bounds); the rest are left."""
    max_article_chars: Annotated[Integer, Field(ge=1000)] = 100_000
    """Characters of article text stored; longer ones are cut at a paragraph (bot.bounds)."""


class FeedSettings(_Section):
    """The republished Atom feeds."""

    max_entries: Annotated[Integer, Field(ge=1)] = 50
    """Newest entries kept per Atom document."""
    websub_hub: HttpUrl | None = None
    """A WebSub hub: advertised in every feed (rel="hub") and pinged whenever a feed changes."""


def _lower_case(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


class LoggingSettings(_Section):
    """The process's log on stderr (bot.logs): one event per line, secrets always removed."""

    level: Annotated[
        Literal["debug", "info", "warning", "error"], BeforeValidator(_lower_case)
    ] = "info"
    """The least severe level written; ``--log-level`` on the command line wins over it."""
    format: Annotated[Literal["text", "json"], BeforeValidator(_lower_case)] = "text"
    """``json``: one object per line (time, level, logger, message, exception)."""


class FleetSettings(_Section):
    """Several `wirewatch run` workers sharing one PostgreSQL database (bot.fleet); unused on
    SQLite, which serves one process."""

    lease: Duration | None = None
    """How long a worker's claim on a source (or on a host's request slot) outlives the worker:
    after a crash, another worker takes the source over at most this long after the claim was
    last renewed. None: three times `fetch.timeout`."""
    claim_every: Duration = timedelta(seconds=1)
    """How often a worker looks for due sources (also whenever one of its polls ends)."""
    refresh_every: Duration = timedelta(seconds=2)
    """How often a worker checks whether another worker's poll changed the feeds it serves."""
    chat_lease: Duration = timedelta(seconds=60)
    """How long a worker's claim on a chat (its alerts) outlives the worker: a dead worker's
    chats wait at most this long before another takes them; renewed every third of it
    (bot.outbox_claims)."""
    leader_retry: Duration = timedelta(seconds=5)
    """How often a worker tries to become the one that reads chat commands, and the leader
    checks that it still is (bot.leader)."""

    @model_validator(mode="after")
    def _lease_outlasts_renewal(self) -> Self:
        # Running polls renew their leases every lease/3, checked once per claim round.
        if self.lease is not None and self.lease < 3 * self.claim_every:
            raise PydanticCustomError(
                "fleet_lease",
                "lease must be at least 3 × claim_every, so running polls renew it in time",
            )
        return self


class RetentionSettings(_Section):
    """How long stored articles are kept (bot.retention)."""

    articles: Duration | None = timedelta(days=90)
    """Articles (with their matches, story links and settled alerts) untouched for longer than
    this are pruned; null keeps everything (the database then grows without bound)."""
    every: Duration = timedelta(hours=6)
    """How often `wirewatch run` prunes (`run --once` prunes on every run)."""


class AdminAlertSettings(_Section):
    """When to tell telegram.admin_chat that something needs a person (bot.admin_alerts)."""

    source_failing_for: Duration = timedelta(hours=24)
    """A source whose polls have failed for longer than this."""
    outbox_backlog: Annotated[Integer, Field(ge=1)] = 500
    """More alerts than this waiting to be sent, all chats together."""
    min_free_disk_mb: Annotated[Integer, Field(ge=0)] = 1024
    """Less free space than this (MiB) on the disk of the database or of output_dir."""
    every: Duration = timedelta(minutes=10)
    """How often `wirewatch run` checks."""


def _default_title(data: object) -> object:
    """A title left out is the name: display code then never has to handle a missing title."""
    if isinstance(data, dict) and "title" not in data and isinstance(data.get("name"), str):
        return {**data, "title": data["name"]}
    return data


def _check_css(value: str) -> str:
    try:
        return check_selector(value)
    except ValueError as error:
        raise PydanticCustomError("css", str(error)) from None


CssSelector = Annotated[str, AfterValidator(_check_css)]


class SelectorSettings(_Section):
    """Where a `page` source's article links are (CSS selectors, see feeds.listing)."""

    links: CssSelector
    title: CssSelector | None = None
    date: CssSelector | None = None


class SourceSettings(_Section):
    """A news feed to poll."""

    name: Slug
    title: str = ""
    """Human name of the source (feeds, OPML); defaults to the name."""
    url: HttpUrl
    every: Duration = timedelta(minutes=15)
    full_text: Literal["auto", "always", "never"] = "auto"
    """Fetch the article page: when the feed carries only a summary (auto), always, or never."""
    type: Literal["feed", "page"] = "feed"
    """A feed (RSS, Atom, JSON Feed), or a news page whose article links `selectors` pick."""
    selectors: SelectorSettings | None = None
    min_every: Duration | None = None
    """Shortest interval the polling may adapt down to (default: `every`)."""
    max_every: Duration | None = None
    """Longest interval the polling may adapt up to (default: 4 × `every`)."""
    added_from_chat: bool = False
    """Written by /addsource: the URL came from a chat, so even its own host must be public
    (unless fetch.allow_private_addresses); delete the key to vouch for it."""

    @model_validator(mode="before")
    @classmethod
    def _title_defaults_to_name(cls, data: object) -> object:
        return _default_title(data)

    @model_validator(mode="after")
    def _check_type_and_bounds(self) -> Self:
        if self.type == "page" and self.selectors is None:
            raise PydanticCustomError("selectors", "a page source needs selectors (links: ...)")
        if self.type == "feed" and self.selectors is not None:
            raise PydanticCustomError("selectors", "selectors are only for type: page")
        if not self.shortest_interval <= self.every <= self.longest_interval:
            raise PydanticCustomError("bounds", "need min_every <= every <= max_every")
        return self

    @property
    def shortest_interval(self) -> timedelta:
        return self.min_every if self.min_every is not None else self.every

    @property
    def longest_interval(self) -> timedelta:
        return self.max_every if self.max_every is not None else self.every * 4


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise PydanticCustomError(
            "timezone", 'unknown time zone "{zone}" (use e.g. Europe/Kyiv or UTC)', {"zone": value}
        ) from None
    return value


def _check_schedule(value: str) -> str:
    try:
        parse_schedule(value)
    except RhythmError as error:
        raise PydanticCustomError("schedule", "{reason}", {"reason": str(error)}) from None
    return value


def _check_quiet_hours(value: str) -> str:
    try:
        parse_quiet_hours(value)
    except RhythmError as error:
        raise PydanticCustomError("quiet_hours", "{reason}", {"reason": str(error)}) from None
    return value


class ChatRoute(_Section):
    """Where and how a watchlist's alerts go: a chat, optionally one forum topic in it.

    In YAML a bare chat id is the short form of ``{chat: ID}``, so older configs keep working.
    """

    chat: Integer
    """Telegram chat id (negative for groups and channels)."""
    thread: Integer | None = None
    """Forum topic (message_thread_id) to post into; None: the chat's main thread."""
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"
    """IANA zone in which alert times are shown to this chat."""
    link_preview: Literal["off", "above", "below"] = "off"
    """Telegram's preview of the article link: none, above the text, or below it."""
    mode: Literal["instant", "digest"] | None = None
    """instant: each alert on its own; digest: grouped on ``schedule``. Omitted: digest when a
    schedule other than "as it happens" is given, else instant."""
    schedule: Annotated[str, AfterValidator(_check_schedule)] = "as it happens"
    """When digests go out, in ``timezone`` (bot.rhythm: "hourly", "daily at 08:00", ...)."""
    quiet_hours: Annotated[str, AfterValidator(_check_quiet_hours)] | None = None
    """"22:00-07:00": instant alerts queued then are held and sent as one digest at the end."""

    @model_validator(mode="after")
    def _mode_matches_schedule(self) -> Self:
        instant = parse_schedule(self.schedule).instant
        if self.mode == "digest" and instant:
            raise PydanticCustomError(
                "digest_schedule", 'mode: digest needs a schedule, e.g. "daily at 08:00"'
            )
        if self.mode == "instant" and not instant:
            raise PydanticCustomError(
                "digest_schedule",
                'schedule "{schedule}" only applies to mode: digest',
                {"schedule": self.schedule},
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _bare_chat_id(cls, data: object) -> object:
        if isinstance(data, int) and not isinstance(data, bool):
            return {"chat": data}
        if isinstance(data, str | bool | float):
            raise PydanticCustomError("int_type", "")
        return data


class WatchlistSettings(_Section):
    """What a user follows, as written in YAML; :meth:`to_watchlist` gives the matcher's form."""

    name: Slug
    """Used in feed URLs, so it is a slug."""
    title: str = ""
    """Human title of the feed; defaults to the name."""
    keywords: Annotated[tuple[Term, ...], Field(min_length=1)] = ()
    """Any one of these must occur (required unless there is a query)."""
    all_of: tuple[Term, ...] = Field(default=(), validation_alias="all")
    """Each of these must occur too."""
    exclude: tuple[Term, ...] = ()
    """None of these may occur."""
    sources: tuple[str, ...] = ()
    """Only articles from these sources; empty means all sources."""
    allow_regex: bool = Field(default=False, validation_alias="regex")
    """May the query use /regex/ terms (RE2, bounded cost)? Declared before `query` reads it."""
    query: str = ""
    """A rule in the watch language (feeds.query), ANDed with the term lists."""
    languages: tuple[Annotated[str, AfterValidator(check_language)], ...] = ()
    """Only articles in these languages; an article of unknown language passes."""
    min_mentions: Annotated[Integer, Field(ge=0)] = 0
    """Mentions the standfirst and body must hold, unless the title has one."""
    chats: tuple[ChatRoute, ...] = ()
    """Telegram chats (and topics) to alert; a bare id in YAML is ``{chat: id}``."""

    @model_validator(mode="before")
    @classmethod
    def _title_defaults_to_name(cls, data: object) -> object:
        return _default_title(data)

    @field_validator("query")
    @classmethod
    def _parse_query(cls, query: str, info: ValidationInfo) -> str:
        allow = bool(info.data.get("allow_regex", False))
        return check_query(query, allow_regex=allow, watchlist=info.data.get("name"))

    @model_validator(mode="after")
    def _something_to_look_for(self) -> Self:
        if not self.keywords and not self.query.strip():
            raise PydanticCustomError(
                "watchlist_terms", 'missing required key "keywords" (or write a "query")'
            )
        return self

    def to_watchlist(self) -> Watchlist:
        """The matcher needs only the terms; delivery and display stay in the bot."""
        return Watchlist(
            name=self.name,
            keywords=self.keywords,
            all_of=self.all_of,
            exclude=self.exclude,
            sources=self.sources,
            query=self.query,
            languages=self.languages,
            min_mentions=self.min_mentions,
            allow_regex=self.allow_regex,
        )

    def describe(self) -> str:
        """The watchlist in words, for feed subtitles: 'Ukraine or Nato, not football'."""
        if self.query.strip():
            return f"Articles matching {' '.join(self.query.split())}" + (
                f" and {' or '.join(self.keywords)}" if self.keywords else ""
            )
        words = " or ".join(self.keywords)
        if self.all_of:
            words += ", with " + " and ".join(self.all_of)
        if self.exclude:
            words += ", not " + " or ".join(self.exclude)
        if self.sources:
            words += " (from " + ", ".join(self.sources) + ")"
        return f"Articles mentioning {words}"


def _default_output_dir() -> Path:
    return Path("var/feeds")


class Settings(_Section):
    """Everything the bot needs, validated; built once by :func:`load_settings` and passed down."""

    path: Path = Path()
    """The config file these settings came from (not a YAML key)."""
    database: Annotated[str, AfterValidator(_check_database_url)] = (
        "sqlite:///var/wirewatch.sqlite3"
    )
    """``sqlite:///path`` (one process) or ``postgresql://user:password@host/dbname`` (any number
    of processes; ``postgres://`` works too, opened with psycopg 3): see bot.database_url. The
    password is never logged; ``${VAR}`` keeps it out of the file."""
    server: ServerSettings = ServerSettings()
    output_dir: Path = Field(default_factory=_default_output_dir)
    """Where Atom files are written; relative to the working directory, kept as written."""
    telegram: TelegramSettings = TelegramSettings()
    fetch: FetchSettings = FetchSettings()
    feeds: FeedSettings = FeedSettings()
    logging: LoggingSettings = LoggingSettings()
    retention: RetentionSettings = RetentionSettings()
    admin_alerts: AdminAlertSettings = AdminAlertSettings()
    fleet: FleetSettings = FleetSettings()
    sources: Annotated[tuple[SourceSettings, ...], Field(min_length=1)]
    watchlists: Annotated[tuple[WatchlistSettings, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _check_references(self) -> Self:
        """Keep the cross-item rules true for code-built settings too (the loader locates them)."""
        messages = [
            problem.message
            + (f" (first defined at {_path_in_words(problem.first)})" if problem.first else "")
            for problem in _reference_problems(
                [source.name for source in self.sources],
                [(wl.name, list(wl.sources)) for wl in self.watchlists],
            )
        ] + [
            problem.message
            for problem in _route_problems(
                [[(route.chat, route.thread) for route in wl.chats] for wl in self.watchlists]
            )
        ]
        if messages:
            raise PydanticCustomError("settings_reference", "; ".join(messages))
        return self


# ── loading ──────────────────────────────────────────────────────────────────────────────────

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Located:
    """A problem found in the data, before it is placed in the file."""

    loc: Loc
    message: str
    at_key: bool = False
    """Point at the key itself rather than its value (unknown keys)."""
    first: Loc | None = None
    """For duplicates: where the name was first defined."""
    offset: int | None = None
    """For query errors: the offset of the mistake inside the query text."""


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, interpolate and validate a config file; raise :class:`SettingsError` with all problems.

    ``environ`` (default :data:`os.environ`) supplies ``${VAR}`` values; tests pass their own.
    """
    env = os.environ if environ is None else environ
    file = str(path)
    root = _read_yaml(path, file)
    if not isinstance(root, CommentedMap):
        raise SettingsError([_not_a_mapping(root, file)])
    blown = expansion_problem(root)  # before anything follows the aliases
    if blown is not None:
        line, column = _position(root, (blown[0],), at_key=True)
        raise SettingsError([ConfigProblem(file, line + 1, column + 1, blown[1])])

    found: list[_Located] = []
    data = _to_plain(root, (), env, found)
    assert isinstance(data, dict)
    failed = [problem.loc for problem in found]
    if "path" in data:
        found.append(_Located(("path",), _unknown_key("path", Settings), at_key=True))
        del data["path"]
    data["path"] = path

    found.extend(_located_reference_problems(data))
    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            if _is_echo(error):
                continue
            if any(error["loc"][: len(loc)] == loc for loc in failed):
                continue  # the value is wrong because interpolation failed; said once is enough
            found.append(_from_pydantic(error))

    if found or settings is None:
        problems = {_place(problem, root, file) for problem in found}
        raise SettingsError(sorted(problems, key=lambda p: (p.line, p.column, p.message)))
    return settings


def _read_yaml(path: Path, file: str) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SettingsError(
            [ConfigProblem(file, 1, 1, f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise SettingsError(
            [ConfigProblem(file, 1, 1, f"cannot read: not UTF-8 text ({exc.reason})")]
        ) from None
    too_deep = flow_depth_problem(text)
    if too_deep is not None:
        raise SettingsError([ConfigProblem(file, *too_deep)])
    try:
        with warnings.catch_warnings():
            # ruamel only warns about a reused anchor and lets the second one win: every alias
            # after it silently means the other value. In a configuration that is a mistake.
            warnings.simplefilter("error", ReusedAnchorWarning)
            return YAML(typ="rt").load(text)
    except ReusedAnchorWarning as exc:
        raise SettingsError([_reused_anchor(file, str(exc))]) from None
    except RecursionError:  # ruamel composes nested collections recursively
        raise SettingsError(
            [ConfigProblem(file, 1, 1, "invalid YAML: collections nested too deeply")]
        ) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        message = f"invalid YAML: {exc.problem or exc.context}"
        duplicate = re.match(r'found duplicate key "(.*?)" with value', exc.problem or "")
        if duplicate:  # ruamel's text echoes both values, which may be secrets
            message = f'invalid YAML: duplicate key "{duplicate.group(1)}"'
        if exc.problem and exc.context and exc.context_mark is not None:
            message += f" ({exc.context} that starts at line {exc.context_mark.line + 1})"
        raise SettingsError([ConfigProblem(file, line, column, message)]) from None
    except YAMLError as exc:
        raise SettingsError([ConfigProblem(file, 1, 1, f"invalid YAML: {exc}")]) from None


def _reused_anchor(file: str, message: str) -> ConfigProblem:
    """ruamel's reused-anchor warning (its text names both places) as a located problem."""
    name = re.search(r"found duplicate anchor '(.*?)'", message)
    places = re.findall(r"line (\d+), column (\d+)", message)
    line, column = (int(places[-1][0]), int(places[-1][1])) if places else (1, 1)
    first = f" (first defined at line {places[0][0]})" if len(places) > 1 else ""
    anchor = f"&{name.group(1)} " if name else ""
    return ConfigProblem(
        file, line, column, f"invalid YAML: anchor {anchor}defined twice{first}; rename one"
    )


def _not_a_mapping(root: object, file: str) -> ConfigProblem:
    if root is None:
        return ConfigProblem(
            file, 1, 1, "the file is empty: expected a mapping with at least sources and watchlists"
        )
    line, column = _node_position(root)
    return ConfigProblem(
        file,
        line + 1,
        column + 1,
        f"the top level must be a mapping of settings (key: value), got {_describe(root)}",
    )


def _node_position(node: object) -> tuple[int, int]:
    """0-based start of a mapping or sequence node; (0, 0) for anything else."""
    if isinstance(node, CommentedMap | CommentedSeq):
        return node.lc.line, node.lc.col
    return 0, 0


# ── interpolation ────────────────────────────────────────────────────────────────────────────

_REFERENCE = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_VARIABLE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _interpolate(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand ``${VAR}`` and ``${VAR:-default}`` (default also when VAR is empty), ``$$`` → ``$``.

    Returns the text and the messages for references that could not be expanded.
    """
    messages: list[str] = []

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$$":
            return "$"
        if whole == "${":
            messages.append('unterminated "${" (write $$ for a literal dollar)')
            return whole
        inner = _VARIABLE.fullmatch(match.group(1))
        if inner is None:
            messages.append(
                f'bad variable reference "{whole}" (use ${{NAME}} or ${{NAME:-default}})'
            )
            return whole
        name, default = inner.group(1), inner.group(2)
        value = env.get(name)
        if default is not None and not value:
            return default
        if value is None:
            messages.append(
                f"environment variable {name} is not set (set it, or give a default: ${{{name}:-}})"
            )
            return ""
        return value

    return _REFERENCE.sub(replace, text), messages


def _to_plain(node: object, loc: Loc, env: Mapping[str, str], found: list[_Located]) -> object:
    """Copy a ruamel tree into plain dicts, lists and scalars, interpolating strings on the way.

    Keys are not interpolated: they are names from the schema, never secrets or addresses.
    """
    if isinstance(node, CommentedMap):
        plain: dict[str, object] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                found.append(
                    _Located((*loc, key), f"keys must be text, got {_describe(key)}", at_key=True)
                )
                continue
            plain[key] = _to_plain(value, (*loc, key), env, found)
        return plain
    if isinstance(node, CommentedSeq):
        return [_to_plain(item, (*loc, index), env, found) for index, item in enumerate(node)]
    if isinstance(node, str):
        text, messages = _interpolate(str(node), env)
        found.extend(_Located(loc, message) for message in messages)
        return text
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


# ── cross-item checks ────────────────────────────────────────────────────────────────────────


# Feed names the bot itself publishes, which a watchlist's feed would overwrite.
RESERVED_FEED_NAMES = frozenset({"all"})


def _reference_problems(
    source_names: Sequence[object], watchlists: Sequence[tuple[object, Sequence[object]]]
) -> Iterator[_Located]:
    """Names must be unique, and a watchlist may name only defined sources.

    Works on raw values (anything not a string is skipped: validation reports it) so the loader
    can run it even when other parts of the file are invalid.
    """
    for kind, names in (
        ("source", source_names),
        ("watchlist", [name for name, _ in watchlists]),
    ):
        first: dict[str, int] = {}
        for index, name in enumerate(names):
            if not isinstance(name, str):
                continue
            if name in first:
                yield _Located(
                    (f"{kind}s", index, "name"),
                    f'duplicate {kind} name "{name}"',
                    first=(f"{kind}s", first[name], "name"),
                )
            else:
                first[name] = index
    for index, (name, _) in enumerate(watchlists):
        if isinstance(name, str) and name in RESERVED_FEED_NAMES:  # a list name is unhashable
            yield _Located(
                ("watchlists", index, "name"),
                f'"{name}" is reserved for the feed of every match; choose another name',
            )
    defined = list(dict.fromkeys(name for name in source_names if isinstance(name, str)))
    shown = ", ".join(defined) or "none"
    for list_index, (_, wanted) in enumerate(watchlists):
        for index, name in enumerate(wanted):
            if isinstance(name, str) and name not in defined:
                yield _Located(
                    ("watchlists", list_index, "sources", index),
                    f'unknown source "{name}" (defined sources: {shown})',
                )


def _located_reference_problems(data: Mapping[str, object]) -> list[_Located]:
    def items(key: str) -> list[Mapping[str, object]]:
        value = data.get(key)
        if not isinstance(value, list):
            return []
        return [item if isinstance(item, dict) else {} for item in value]

    sources = [item.get("name") for item in items("sources")]
    watchlists = [
        (item.get("name"), wanted if isinstance(wanted := item.get("sources"), list) else [])
        for item in items("watchlists")
    ]
    routes = [
        [_raw_route(route) for route in chats] if isinstance(chats := item.get("chats"), list)
        else []
        for item in items("watchlists")
    ]
    return list(_reference_problems(sources, watchlists)) + list(_route_problems(routes))


def _raw_route(route: object) -> tuple[object, object]:
    """(chat, thread) of a route as written: a bare chat id or a {chat, thread} mapping."""
    if isinstance(route, Mapping):
        return route.get("chat"), route.get("thread")
    return route, None


def _route_problems(routes: Sequence[Sequence[tuple[object, object]]]) -> Iterator[_Located]:
    """A watchlist may route to each (chat, forum topic) once: a second route would send every
    alert there twice, and /unsubscribe could remove only one of them. ``routes`` holds each
    watchlist's (chat, thread) pairs; pairs that are not integers are skipped (validation says)."""
    for list_index, pairs in enumerate(routes):
        first: dict[tuple[int, int | None], int] = {}
        for index, (chat, thread) in enumerate(pairs):
            chat_id, thread_id = _as_int(chat), None if thread is None else _as_int(thread)
            if chat_id is None or (thread is not None and thread_id is None):
                continue
            key = chat_id, thread_id
            if key in first:
                topic = "" if thread_id is None else f", topic {thread_id}"
                yield _Located(
                    ("watchlists", list_index, "chats", index),
                    f"duplicate route to chat {chat_id}{topic}",
                    first=("watchlists", list_index, "chats", first[key]),
                )
            else:
                first[key] = index


def _as_int(value: object) -> int | None:
    """The integer validation will make of ``value`` (an interpolated "${CHAT}" is text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


# ── pydantic errors in plain words ───────────────────────────────────────────────────────────

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected text",
    "list_type": "expected a list",
    "tuple_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "path_type": "expected a path",
    "timedelta_type": "expected a duration such as 30s, 10m, 1h or 1d",
}


def _is_echo(error: ErrorDetails) -> bool:
    """Errors that only repeat a problem reported elsewhere, with a worse location."""
    if error["type"] == "settings_reference":
        return True  # reported with a location by _located_reference_problems
    # pydantic checks a list's length after dropping the items that failed, so a list whose only
    # items are invalid is also "too short"; the items' own errors say what is wrong.
    value = error["input"]
    minimum = error.get("ctx", {}).get("min_length", 0)
    return error["type"] == "too_short" and isinstance(value, list) and len(value) >= minimum


def _from_pydantic(error: ErrorDetails) -> _Located:
    kind, loc, ctx = error["type"], tuple(error["loc"]), error.get("ctx", {})
    value = error["input"]
    if kind == "missing":
        return _Located(loc[:-1], f'missing required key "{loc[-1]}"')
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        return _Located(loc, _unknown_key(str(loc[-1]), model), at_key=True)
    if kind in _EXPECTED:
        message = f"{_EXPECTED[kind]}, got {_describe(value)}"
        if kind == "string_type" and isinstance(value, int | float):
            message += f' (quote it: "{_describe(value)}")'
        return _Located(loc, message)
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        return _Located(loc, f"expected one of {', '.join(choices)}; got {_describe(value)}")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        words = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()))
        return _Located(loc, f"must be {words} {bound}, got {_describe(value)}")
    if kind in ("too_short", "string_too_short"):
        if kind == "string_too_short" or ctx.get("min_length") == 1:
            return _Located(loc, "must not be empty")
        return _Located(loc, f"must have at least {ctx.get('min_length')} items")
    if kind == "query":
        return _Located(loc, error["msg"], offset=int(ctx.get("offset", 0)))
    message = error["msg"]
    message = message.removeprefix("Value error, ")
    return _Located(loc, message[:1].lower() + message[1:])


def _model_at(loc: Loc) -> type[BaseModel]:
    """The model class that validates the mapping at ``loc`` (for typo suggestions)."""
    model: type[BaseModel] = Settings
    for step in loc:
        if isinstance(step, int):
            continue
        field = model.model_fields.get(step)
        if field is None:
            break
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    return model


def _unknown_key(key: str, model: type[BaseModel]) -> str:
    known = [
        field.validation_alias if isinstance(field.validation_alias, str) else name
        for name, field in model.model_fields.items()
        if name != "path"
    ]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f' (did you mean "{close[0]}"?)' if close else f" (known keys: {', '.join(known)})"
    return f'unknown key "{key}"{hint}'


def _describe(value: object) -> str:
    """A short, human rendering of a YAML value for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f'"{shown}"'
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return str(value)


# ── placing problems in the file ─────────────────────────────────────────────────────────────


def _place(problem: _Located, root: CommentedMap, file: str) -> ConfigProblem:
    """Turn a located problem into file:line:column and a message that names the key path."""
    line, column = _position(root, problem.loc, at_key=problem.at_key)
    path = _path_in_words(problem.loc[:-1] if problem.at_key else problem.loc)
    message = f"{path}: {problem.message}" if path else problem.message
    if problem.offset is not None:
        line, column, note = query_position(root, problem.loc, problem.offset, file, line, column)
        message += note
    if problem.first is not None:
        message += f" (first defined at line {_position(root, problem.first)[0] + 1})"
    return ConfigProblem(file, line + 1, column + 1, message)


def _position(root: CommentedMap, loc: Loc, *, at_key: bool = False) -> tuple[int, int]:
    """Walk the ruamel tree along ``loc``; the 0-based position of the deepest node that exists.

    A value that is absent (a missing key) is thus reported at its parent mapping.
    """
    line, column = root.lc.line, root.lc.col
    node: object = root
    for depth, step in enumerate(loc):
        last = depth == len(loc) - 1
        try:
            if isinstance(node, CommentedMap) and step in node:
                # ruamel places an empty (null) value at the next token, often the next line
                on_key = (last and at_key) or node[step] is None
                line, column = node.lc.key(step) if on_key else node.lc.value(step)
                node = node[step]
            elif isinstance(node, CommentedSeq) and isinstance(step, int) and step < len(node):
                line, column = node.lc.item(step)
                node = node[step]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break  # merged keys (<<:) have no position of their own
    return line, column


def _path_in_words(loc: Loc) -> str:
    words = ""
    for step in loc:
        words += f"[{step}]" if isinstance(step, int) else (f".{step}" if words else str(step))
    return words
