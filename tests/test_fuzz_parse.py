"""Fuzzing feed parsing: any bytes under any Content-Type give entries or a ParseError, never
another exception and never a hang; every entry that comes out is well formed.

Inputs are random bytes, and the real fixture feeds (tests/fixtures/feeds: RSS 0.91/2.0, RDF,
Atom 0.3/1.0, JSON Feed 1.0/1.1, Latin-1, malformed) mutated byte-wise: slices deleted,
duplicated or moved, bytes flipped, and tokens that parsers trip over spliced in (entity
declarations, CDATA ends, NULs, stray BOMs, JSON punctuation). An entity-expansion bomb is an
explicit example: it must not take long or eat memory.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import feedparser
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from feeds.errors import ParseError
from feeds.models import ConditionalHeaders, FetchResult
from feeds.parse import _repair_for_feedparser, parse_feed_salvaged, parse_hints
from tests.conftest import REPO

FIXTURES = sorted((REPO / "tests" / "fixtures" / "feeds").iterdir())
SEEDS = [path.read_bytes() for path in FIXTURES]
CONTENT_TYPES = st.sampled_from(
    [
        None, "application/rss+xml", "application/atom+xml; charset=utf-8", "text/xml",
        "application/feed+json", "application/json", "text/html; charset=iso-8859-1",
        "text/plain; charset=bogus-charset", "application/xml; charset=utf-16",
    ]
)  # fmt: skip
SPLICES = st.sampled_from(
    [
        b"<", b">", b"&", b"&amp;", b"&#0;", b"&#x110000;", b"]]>", b"<![CDATA[", b"\x00",
        b"\xef\xbb\xbf", b"\xff\xfe", b'<!DOCTYPE x [<!ENTITY e "ee">]>', b"&e;", b"<!--",
        b"{", b"}", b'"', b"[", b"]", b"null", b"1e999", b'"items":', b"\\u0000", b"\xc3",
        b"<item>", b"</entry>", b"<link>javascript:alert(1)</link>", b'xml:base="//x/"',
        b'<link href="http://[::1/"/>', b"<pubDate>Mon, 99 Foo 99999 99:99:99 +9999</pubDate>",
        b'"date_published": "9999-99-99T99:99:99Z"', b"<ttl>99999999999999999999</ttl>",
    ]
)  # fmt: skip
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">'.encode()
        for n in range(1, 10)
    )
    + b']><rss version="2.0"><channel><title>&lol9;</title><item><title>x</title>'
    + b"<description>&lol9;</description></item></channel></rss>"
)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        start = draw(st.integers(0, len(data) - 1))
        end = draw(st.integers(start, min(len(data), start + 200)))
        operation = draw(st.sampled_from(["delete", "duplicate", "flip", "splice", "truncate"]))
        if operation == "delete":
            del data[start:end]
        elif operation == "duplicate":
            data[start:start] = data[start:end]
        elif operation == "flip":
            data[start] = draw(st.integers(0, 255))
        elif operation == "splice":
            data[start:start] = draw(SPLICES)
        else:
            del data[start:]
    return bytes(data)


def result(content: bytes, content_type: str | None) -> FetchResult:
    return FetchResult(
        requested_url="https://news.example/feed",
        url="https://news.example/feed",
        status=200,
        content=content,
        content_type=content_type,
        validators=ConditionalHeaders(),
        fetched_at=datetime(2026, 3, 1, tzinfo=UTC),
    )


def check(content: bytes, content_type: str | None) -> None:
    fetched = result(content, content_type)
    try:
        entries, salvaged = parse_feed_salvaged(fetched, "fuzz")
    except ParseError as error:
        assert str(error)
    else:
        assert salvaged is None or salvaged.startswith("malformed feed salvaged")
        for entry in entries:
            assert entry.guid and (entry.url or entry.title)
            assert entry.url == "" or urlsplit(entry.url).scheme in ("http", "https")
            for moment in (entry.published, entry.updated):
                assert moment is None or moment.tzinfo is not None
    hints = parse_hints(fetched)
    assert hints.ttl is None or hints.ttl >= timedelta(0)


@settings(
    max_examples=200, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow]
)
@given(content=mutated(), content_type=CONTENT_TYPES)
@example(content=BOMB, content_type="application/rss+xml")
@example(content=b"", content_type=None)
@example(content=b"\xef\xbb\xbf", content_type="application/feed+json")
@example(content=b'{"items": [{"id": 1, "url": 2, "title": []}]}', content_type=None)
@example(content=b'{"items": "no"}', content_type=None)
@example(content=b"[1, 2]", content_type="application/json")
@example(content=b'{"items": [{"date_published": "2026-13-45T99:00:00Z"}]}', content_type=None)
def test_mutated_feeds_give_entries_or_a_parse_error(
    content: bytes, content_type: str | None
) -> None:
    check(content, content_type)


@settings(max_examples=200, deadline=timedelta(seconds=2))
@given(content=st.binary(max_size=2000), content_type=CONTENT_TYPES)
def test_random_bytes_give_entries_or_a_parse_error(
    content: bytes, content_type: str | None
) -> None:
    check(content, content_type)


@pytest.mark.parametrize(
    ("channel", "ttl", "hours"),
    [
        ("<ttl>99999999999999999999</ttl>", None, set()),  # overflowed timedelta
        ("<ttl>²</ttl><skipHours><hour>³</hour></skipHours>", None, set()),  # int("²") fails
        ("<ttl>٣</ttl>", None, set()),  # not ASCII digits
        ("<ttl>999999</ttl><skipHours><hour>24</hour></skipHours>", 999999, {0}),
        ("<ttl>60</ttl>", 60, set()),
    ],
)
def test_odd_hint_numbers_are_ignored(channel: str, ttl: int | None, hours: set[int]) -> None:
    """Regressions found by the fuzzer: hints are optional, so an odd number is no hint."""
    body = f'<rss version="2.0"><channel><title>t</title>{channel}</channel></rss>'
    hints = parse_hints(result(body.encode(), "application/rss+xml"))
    assert hints.ttl == (timedelta(minutes=ttl) if ttl is not None else None)
    assert hints.skip_hours == hours


def test_nested_entities_are_not_expanded() -> None:
    """Regression (the fuzzer's bomb example took seconds and hundreds of MB): entity
    declarations that refer to other entities are dropped before parsing, so the feed is read
    by the lenient parser with the references left unexpanded."""
    entries, salvaged = parse_feed_salvaged(result(BOMB, "application/rss+xml"), "bomb")
    assert salvaged is not None and "undefined entity" in salvaged
    [entry] = entries
    assert entry.title == "x" and len(entry.summary) < 100


@pytest.mark.parametrize(
    "declaration",
    [
        '<!ENTITY ext SYSTEM "file:///etc/passwd">',
        "<!ENTITY ext PUBLIC '-//x//EN' 'http://evil.example/x.dtd'>",
        "<!ENTITY % param \"<!ENTITY inner 'x'>\">",
        '<!entity ext SYSTEM "file:///etc/hostname">',
    ],
)
def test_external_and_parameter_entities_are_dropped(declaration: str) -> None:
    body = (
        f'<?xml version="1.0"?><!DOCTYPE rss [{declaration}]><rss version="2.0"><channel>'
        "<title>t</title><item><title>a &ext; b</title></item></channel></rss>"
    )
    [entry] = parse_feed_salvaged(result(body.encode(), "application/rss+xml"), "x")[0]
    assert "root:" not in entry.title and "a" in entry.title


def test_plain_entity_declarations_still_work() -> None:
    body = (
        '<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY nbsp "&#160;"><!ENTITY org "Wire Org">]>'
        '<rss version="2.0"><channel><title>t</title>'
        "<item><title>Kyiv&nbsp;talks by &org;</title></item></channel></rss>"
    )
    entries, salvaged = parse_feed_salvaged(result(body.encode(), "application/rss+xml"), "x")
    assert salvaged is None
    assert entries[0].title == "Kyiv talks by Wire Org"  # (titles fold no-break spaces)


ATOM03 = (REPO / "tests" / "fixtures" / "feeds" / "atom03.xml").read_bytes()


@pytest.mark.parametrize(
    ("content", "title"),
    [
        # feedparser's lenient parser raised ValueError from chr() on these references
        (ATOM03.replace(b"<title>Atom", b"<title>&#x110000;Atom", 1), "\ufffdAtom 0.3 Example"),
        (ATOM03.replace(b"<title>Atom", b"<title>&#99999999999999999999;Atom", 1),
         "\ufffdAtom 0.3 Example"),
        (ATOM03.replace(b"<title>Atom", b"<title>&#xD800;Atom", 1), "\ufffdAtom 0.3 Example"),
        # its charset detection raised UnicodeDecodeError / ValueError on these names
        (ATOM03.replace(b'encoding="utf-8"', b'encoding="\x80tf-8"', 1), "Atom 0.3 Example"),
        (ATOM03.replace(b'encoding="utf-8"', b'encoding="\x00tf-8"', 1), "Atom 0.3 Example"),
    ],
)  # fmt: skip
def test_feedparser_crashes_found_by_fuzzing_are_mended(content: bytes, title: str) -> None:
    """Regressions: each of these made feedparser raise instead of reading the feed."""
    [entry] = parse_feed_salvaged(result(content, None), "atom03")[0]
    assert entry.title == "Old atom entry"
    parsed = feedparser.parse(io.BytesIO(_repair_for_feedparser(content)))
    assert parsed.feed.title == title
