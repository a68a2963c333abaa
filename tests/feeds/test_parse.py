"""parse_feed(): every format into the same canonical Entry. Cases are fixture files under
tests/fixtures/feeds plus the entries they must give, so adding a format quirk is adding a row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.sample_site import Response, SampleSite
from feeds.cadence import FeedHints
from feeds.errors import ParseError
from feeds.fetch import FetchLimits, fetch, make_client
from feeds.models import ConditionalHeaders, Entry, FetchResult
from feeds.parse import parse_feed, parse_feed_salvaged, parse_hints
from feeds.text import html_to_text

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "feeds"
FEED_URL = "https://news.example.org/feeds/latest.xml"
SOURCE = "example"


def fetched(
    name: str, content_type: str | None = "application/rss+xml", url: str = FEED_URL
) -> FetchResult:
    return FetchResult(
        requested_url=url,
        url=url,
        status=200,
        content=(FIXTURES / name).read_bytes(),
        content_type=content_type,
        validators=ConditionalHeaders(),
        fetched_at=datetime(2024, 5, 7, tzinfo=UTC),
    )


def inline(body: bytes, content_type: str | None) -> FetchResult:
    return FetchResult(
        FEED_URL, FEED_URL, 200, body, content_type, ConditionalHeaders(),
        datetime(2024, 5, 7, tzinfo=UTC),
    )  # fmt: skip


def json_feed(**item: object) -> FetchResult:
    """A JSON Feed 1.1 of one item with a link, plus the given fields."""
    document = {
        "version": "https://jsonfeed.org/version/1.1",
        "items": [{"id": "1", "url": "https://news.example.org/a"} | item],
    }
    return inline(json.dumps(document).encode(), "application/feed+json")


def rss_item(inner: str) -> FetchResult:
    """An RSS 2.0 feed of one item with a link, plus the given item markup."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>t</title>'
        f"<item><link>https://news.example.org/a</link>{inner}</item></channel></rss>"
    )
    return inline(body.encode(), "application/rss+xml")


def atom_entry(inner: str) -> FetchResult:
    """An Atom 1.0 feed of one entry with an id and a link, plus the given entry markup."""
    body = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        "<title>t</title><id>urn:feed</id><updated>2024-05-06T00:00:00Z</updated>"
        '<entry><id>urn:1</id><link href="https://news.example.org/a"/>'
        f"{inner}</entry></feed>"
    )
    return inline(body.encode(), "application/atom+xml")


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def entry(**fields: object) -> Entry:
    defaults: dict[str, object] = {"source": SOURCE, "summary": ""}
    return Entry(**(defaults | fields))  # type: ignore[arg-type]


CASES = {
    "rss2.xml": (
        "application/rss+xml",
        [
            entry(
                guid="example-wire-1001",
                url="https://news.example.org/world/2024/strike-spreads",  # relative link resolved
                title="Ports & harbours: strike spreads",
                summary="Dock workers walked out on Monday. More to follow.",
                content_html=(
                    "<p>Dock workers <b>walked out</b> on Monday.</p><p>Full story here.</p>"
                ),
                author="Jane Reporter",
                published=at(2024, 5, 6, 7, 30),
            ),
            entry(
                guid="https://news.example.org/world/2024/second",
                url="https://news.example.org/world/2024/second",
                title="Second story",
                summary="Plain description.",
                published=at(2024, 5, 5, 18, 0),
            ),
            # (the item with neither title nor link is skipped)
            entry(
                guid="sha256:09b6a703f6126a406d811cecdcacfecae9d9b5d7f4e07432f9349f2624fffa37",
                url="",
                title="Only a title",
                summary="No link, no guid: the guid is a hash.",
                published=at(2024, 5, 4, 12, 0),
            ),
        ],
    ),
    "rss1.rdf": (
        "application/rdf+xml",
        [
            entry(
                guid="https://rdf.example.org/a",
                url="https://rdf.example.org/a",
                title="RDF first",
                summary="First RDF item.",
                author="Ann Author",
                published=at(2024, 5, 6, 8, 0),
                updated=at(2024, 5, 6, 8, 0),
            ),
            entry(
                guid="https://rdf.example.org/b",
                url="https://rdf.example.org/b",
                title="RDF second",
                summary="Second RDF item.",
                published=at(2024, 5, 5, 7, 0),
                updated=at(2024, 5, 5, 7, 0),
            ),
        ],
    ),
    "rss091.xml": (
        "application/rss+xml",
        [
            entry(
                guid="https://old.example.org/legacy",
                url="https://old.example.org/legacy",
                title="Legacy item",
                summary="Still around.",
            )
        ],
    ),
    "atom10.atom": (
        "application/atom+xml",
        [
            entry(
                guid="tag:atom.example.org,2024:summit",
                url="https://atom.example.org/2024/05/summit",  # resolved against xml:base
                title="Summit ends without deal",
                summary="Leaders left without agreement.",
                content_html="<p>Leaders left without agreement.</p>",
                author="Max Mustermann",
                published=at(2024, 5, 6, 5, 15),
                updated=at(2024, 5, 6, 9, 0),
            ),
            entry(
                guid="tag:atom.example.org,2024:text",
                url="https://atom.example.org/2024/05/text",
                title="Text content",
                summary="XHTML body.",  # no summary: taken from the content
                content_html="<p>XHTML <b>body</b>.</p>",
                updated=at(2024, 5, 5, 9, 0),
            ),
        ],
    ),
    "atom03.xml": (
        "application/atom+xml",
        [
            entry(
                guid="tag:atom03.example.org,2024:1",
                url="https://atom03.example.org/entry",
                title="Old atom entry",
                summary="An entry in Atom 0.3.",
                author="Old Writer",
                published=at(2024, 5, 6, 10, 0),
                updated=at(2024, 5, 6, 11, 0),
            )
        ],
    ),
    "jsonfeed10.json": (
        "application/feed+json",
        [
            entry(
                guid="2001",  # a number in the wild, a string for us
                url="https://news.example.org/feeds/posts/json-one",
                title="JSON & one",
                summary="Hello JSON.",
                content_html="<p>Hello <i>JSON</i>.</p>",
                author="Feed Author",  # inherited from the feed
                published=at(2024, 5, 6, 8, 0),
                updated=at(2024, 5, 6, 12, 0),
            ),
            entry(
                guid="json-two",
                url="https://json.example.org/posts/json-two",
                title="",
                summary="Microblog post without a title. Second paragraph.",
                content_html="<p>Microblog post without a title.</p><p>Second paragraph.</p>",
                author="Item Author",
            ),
        ],
    ),
    "jsonfeed11.json": (
        "application/json",  # generic JSON type: recognised by its version URL
        [
            entry(
                guid="https://json11.example.org/a",
                url="https://json11.example.org/a",
                title="Eleven",
                summary="One point one.",
                content_html="<p>One point one.</p>",
                author="First, Second",
                published=at(2024, 5, 6, 10, 0),
            )
        ],
    ),
    "latin1.xml": (
        "application/rss+xml",  # no charset: the XML prolog decides
        [
            entry(
                guid="https://latin.example.org/creme",
                url="https://latin.example.org/creme",
                title="Crème brûlée à la française",
                summary="Naïve résumé © 2024",
            )
        ],
    ),
    "malformed.xml": (
        "application/rss+xml",
        [
            entry(
                guid="https://broken.example.org/salt?a=1&b=2",
                url="https://broken.example.org/salt?a=1&b=2",
                title="Salt & pepper",
                summary="Unescaped ampersands & friends",
            ),
            entry(
                guid="https://broken.example.org/second",
                url="https://broken.example.org/second",
                title="Second broken",
            ),
        ],
    ),
}


@pytest.mark.parametrize(("name", "content_type", "expected"), [(n, *c) for n, c in CASES.items()])
def test_formats_give_canonical_entries(
    name: str, content_type: str, expected: list[Entry]
) -> None:
    assert parse_feed(fetched(name, content_type), SOURCE) == expected


@pytest.mark.parametrize("name", list(CASES))
def test_dates_are_aware_utc(name: str) -> None:
    for item in parse_feed(fetched(name, CASES[name][0]), SOURCE):
        for value in (item.published, item.updated):
            assert value is None or value.utcoffset() == UTC.utcoffset(None)


@pytest.mark.parametrize("name", ["rss2.xml", "jsonfeed10.json", "atom10.atom"])
def test_content_type_is_not_needed_to_tell_formats_apart(name: str) -> None:
    assert parse_feed(fetched(name, None), SOURCE) == CASES[name][1]


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("rss2.xml", "application/json"), ("jsonfeed11.json", "text/xml; charset=utf-8")],
)
def test_the_body_beats_a_mislabelled_content_type(name: str, content_type: str) -> None:
    assert parse_feed(fetched(name, content_type), SOURCE)[0].guid == CASES[name][1][0].guid


def test_hash_guid_is_stable() -> None:
    first = parse_feed(fetched("rss2.xml"), SOURCE)[-1].guid
    assert first == parse_feed(fetched("rss2.xml"), SOURCE)[-1].guid
    assert first.startswith("sha256:")


def test_latin1_declared_in_content_type_too() -> None:
    result = fetched("latin1.xml", "text/xml; charset=iso-8859-1")
    assert parse_feed(result, SOURCE)[0].title == "Crème brûlée à la française"


def test_an_empty_feed_is_no_error() -> None:
    result = FetchResult(
        FEED_URL, FEED_URL, 200,
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>',
        "application/rss+xml", ConditionalHeaders(), datetime(2024, 5, 7, tzinfo=UTC),
    )  # fmt: skip
    assert parse_feed(result, SOURCE) == []


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        ((FIXTURES / "garbage.txt").read_bytes(), "text/plain", "not a feed"),
        (
            b"<html><head><title>Moved</title></head><body><p>Hi</p></body></html>",
            "text/html",
            "not a feed",
        ),
        (b"", None, "not a feed"),
        (b'{"version": "1.0", "items": []}', "application/json", "version"),
        (b'{"version": "https://jsonfeed.org/version/1.1"', "application/feed+json", "JSON"),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', "application/feed+json", "items"),
        (b"[1, 2]", "application/json", "object"),
    ],
    ids=["garbage", "html", "empty", "json-not-feed", "json-broken", "json-no-items", "json-array"],
)
def test_not_a_feed(body: bytes, content_type: str | None, message: str) -> None:
    result = FetchResult(
        FEED_URL, FEED_URL, 200, body, content_type, ConditionalHeaders(),
        datetime(2024, 5, 7, tzinfo=UTC),
    )  # fmt: skip
    with pytest.raises(ParseError, match=message):
        parse_feed(result, SOURCE)


# A date that parses but has no UTC equivalent must read as missing, never crash the poll.
DATES = [
    ("2024-05-06T10:00:00+02:00", at(2024, 5, 6, 8, 0)),
    ("2024-05-06T08:00:00Z", at(2024, 5, 6, 8, 0)),
    ("2024-05-06T08:00:00", at(2024, 5, 6, 8, 0)),  # naive: taken as UTC
    ("0001-01-01T00:00:00+01:00", None),  # before datetime.min in UTC
    ("9999-12-31T23:59:59-01:00", None),  # after datetime.max in UTC
    ("0001-01-01T00:00:00Z", datetime.min.replace(tzinfo=UTC)),  # the very edge is fine
    ("2024-13-45T99:99:99Z", None),
    ("yesterday", None),
    ("", None),
]


@pytest.mark.parametrize(("value", "expected"), DATES)
def test_json_feed_dates(value: str, expected: datetime | None) -> None:
    [item] = parse_feed(json_feed(date_published=value, date_modified=value), SOURCE)
    assert (item.published, item.updated) == (expected, expected)
    if expected is not None:
        assert item.published is not None and item.published.tzinfo is UTC


@pytest.mark.parametrize("value", [20240506, None, ["2024-05-06"], {"date": "x"}])
def test_json_feed_dates_of_the_wrong_type_are_missing(value: object) -> None:
    [item] = parse_feed(json_feed(date_published=value), SOURCE)
    assert item.published is None


@pytest.mark.parametrize(
    "feed",
    [
        rss_item("<title>t</title><pubDate>{}</pubDate>"),
        atom_entry("<title>t</title><published>{}</published><updated>{}</updated>"),
    ],
    ids=["rss", "atom"],
)
@pytest.mark.parametrize(
    "value",
    [
        "Mon, 06 May 2024 10:00:00 +0200",
        "2024-05-06T10:00:00+02:00",
        "0001-01-01T00:00:00+01:00",
        "9999-12-31T23:59:59-01:00",
        "Fri, 31 Dec 9999 23:59:59 -0100",
        "Sat, 01 Jan 0000 00:00:00 GMT",
        "garbage",
    ],
)
def test_feedparser_dates_are_utc_or_missing(feed: FetchResult, value: str) -> None:
    body = feed.content.replace(b"{}", value.encode())
    [item] = parse_feed(inline(body, feed.content_type), SOURCE)
    for date in (item.published, item.updated):
        assert date is None or date.tzinfo is UTC


# Soft hyphens and zero-width characters are invisible in a title but break matching
# ("Uk\u00adraine" is not "Ukraine"): feed text goes through clean_text, however it is declared.
# The characters themselves, or XML character references: the same text whatever its type.
HIDDEN_TEXT = {
    "soft hyphen": "Uk\u00adraine talks",
    "soft hyphen reference": "Uk&#173;raine talks",
    "zero-width space": "Ukr\u200baine talks",
    "word joiner and nbsp": "Ukraine\u2060\u00a0talks",
}
# HTML escaped inside the XML: only HTML-typed text decodes it.
HIDDEN_HTML = HIDDEN_TEXT | {
    "soft hyphen html entity": "Uk&amp;shy;raine talks",
    "in markup": "&lt;b&gt;Uk\u00adraine&lt;/b&gt; talks",
}


@pytest.mark.parametrize("title", list(HIDDEN_HTML.values()), ids=list(HIDDEN_HTML))
def test_rss_titles_and_summaries_are_clean_text(title: str) -> None:
    feed = rss_item(f"<title>{title}</title><description>{title}</description>")
    [item] = parse_feed(feed, SOURCE)
    assert (item.title, item.summary) == ("Ukraine talks", "Ukraine talks")


@pytest.mark.parametrize(
    ("kind", "title"),
    [("text", title) for title in HIDDEN_TEXT.values()]
    + [("html", title) for title in HIDDEN_HTML.values()],
    ids=[f"text-{name}" for name in HIDDEN_TEXT] + [f"html-{name}" for name in HIDDEN_HTML],
)
def test_atom_titles_and_summaries_are_clean_text(kind: str, title: str) -> None:
    feed = atom_entry(
        f'<title type="{kind}">{title}</title><summary type="{kind}">{title}</summary>'
        f"<author><name>Ol\u00adena Tkachenko</name></author>"
    )
    [item] = parse_feed(feed, SOURCE)
    assert (item.title, item.summary, item.author) == (
        "Ukraine talks",
        "Ukraine talks",
        "Olena Tkachenko",
    )


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("<html>", ""),  # a "document" with no body: no text, and no crash
        ("<html><head><title>T</title></head></html>", ""),
        ("<!DOCTYPE html><p>Body</p>", "Body"),
        ("Hello <!-- comment --> world", "Hello world"),
    ],
)
def test_document_markup_in_a_title_does_not_stop_the_poll(title: str, expected: str) -> None:
    [item] = parse_feed(json_feed(title=title, summary=title), SOURCE)
    assert (item.title, item.summary) == (expected, expected)


@pytest.mark.parametrize(
    "title", ["Uk\u00adraine talks", "Ukr\u200baine talks", "Ukraine\u2060\u00a0talks"]
)
def test_json_feed_text_is_clean_text(title: str) -> None:
    feed = json_feed(title=title, content_text=title, authors=[{"name": "Ol\u00adena"}])
    [item] = parse_feed(feed, SOURCE)
    assert (item.title, item.summary, item.author) == ("Ukraine talks", item.title, "Olena")


@pytest.mark.parametrize(
    ("content_text", "content_html", "summary"),
    [
        (
            "AT&T said <b>no</b>.\n\nSecond \"quoted\" 'para'.",
            "<p>AT&amp;T said &lt;b&gt;no&lt;/b&gt;.</p><p>Second \"quoted\" 'para'.</p>",
            "AT&T said <b>no</b>. Second \"quoted\" 'para'.",
        ),
        (
            "&amp; is already an entity in text",  # text, so it stays literally that
            "<p>&amp;amp; is already an entity in text</p>",
            "&amp; is already an entity in text",
        ),
        (
            "Windows\r\n\r\nline ends\r\nkept in a paragraph\n \t\nthird",
            "<p>Windows</p><p>line ends\nkept in a paragraph</p><p>third</p>",
            "Windows line ends kept in a paragraph third",
        ),
        ("<script>alert(1)</script>", "<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>", None),
        (" \n\n \t ", None, ""),
    ],
    ids=["markup-like", "entity-like", "line-ends", "script", "blank"],
)
def test_json_feed_content_text_becomes_escaped_paragraphs(
    content_text: str, content_html: str | None, summary: str | None
) -> None:
    [item] = parse_feed(json_feed(content_text=content_text), SOURCE)
    assert item.content_html == content_html
    if summary is not None:
        assert item.summary == summary
    # What was written as text reads back as the same text.
    assert html_to_text(item.content_html or "") == item.summary


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite(FIXTURES) as running:
        yield running


async def test_fetched_over_http_then_parsed(site: SampleSite) -> None:
    """End to end: the site's content type and the final URL after a redirect reach the parser."""
    async with make_client("wirewatch-tests/1.0", FetchLimits(total_timeout=5)) as client:
        result = await fetch(client, site.url("/latin1.xml"))
        redirected = site.url("/rss2.xml")
        site.route("/go", lambda req: Response(302, {"Location": redirected}))
        rss2 = await fetch(client, site.url("/go"))
    assert isinstance(result, FetchResult) and isinstance(rss2, FetchResult)
    assert parse_feed(result, SOURCE)[0].title == "Crème brûlée à la française"
    # The relative link resolves against where the feed really was, not where we asked.
    assert parse_feed(rss2, SOURCE)[0].url == site.url("/world/2024/strike-spreads")


# -- charsets: header, XML declaration, sniffing ---------------------------------------------------

_TITLE = "Café Orbán — Київ"


def _rss(declaration: str, title: str = _TITLE) -> str:
    item = f"<item><guid>1</guid><title>{title}</title><link>https://n.example/a</link></item>"
    return f"{declaration}<rss version='2.0'><channel><title>T</title>{item}</channel></rss>"


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        # the header and the declaration agree
        (
            _rss("<?xml version='1.0' encoding='utf-8'?>").encode(),
            "text/xml; charset=utf-8",
            _TITLE,
        ),
        # only the declaration says it (RFC 3023 aside, servers often omit the charset)
        (
            _rss("<?xml version='1.0' encoding='iso-8859-1'?>", "Café Orbán").encode("latin-1"),
            "application/rss+xml",
            "Café Orbán",
        ),
        # mislabelled: the header and the declaration say UTF-8, the bytes are Latin-1
        (
            _rss("<?xml version='1.0' encoding='utf-8'?>", "Café Orbán").encode("latin-1"),
            "application/rss+xml; charset=utf-8",
            "Café Orbán",
        ),
        # mislabelled the other way: declared Latin-1, sent as UTF-8
        (
            _rss("<?xml version='1.0' encoding='iso-8859-1'?>").encode(),
            "application/rss+xml",
            _TITLE,
        ),
        # windows-1251 declared, no header charset
        (
            _rss("<?xml version='1.0' encoding='windows-1251'?>", "Київ").encode("cp1251"),
            "application/rss+xml",
            "Київ",
        ),
        # UTF-16 with a byte order mark and nothing else to go on
        (_rss("<?xml version='1.0'?>").encode("utf-16"), None, _TITLE),
    ],
    ids=["agree", "declaration", "latin1-as-utf8", "utf8-as-latin1", "cp1251", "utf16-bom"],
)
def test_charsets_never_become_mojibake(
    body: bytes, content_type: str | None, expected: str
) -> None:
    [entry] = parse_feed(inline(body, content_type), SOURCE)
    assert entry.title == expected


# -- scheduling hints ------------------------------------------------------------------------------


def test_rss_ttl_skip_hours_and_days_are_read() -> None:
    channel = (
        "<ttl>90</ttl><skipHours><hour>0</hour><hour>24</hour><hour>7</hour><hour>x</hour>"
        "</skipHours><skipDays><day>Saturday</day><day>sunday</day><day>Caturday</day></skipDays>"
    )
    body = f"<?xml version='1.0'?><rss version='2.0'><channel>{channel}</channel></rss>".encode()
    hints = parse_hints(inline(body, "application/rss+xml"))
    assert hints.ttl == timedelta(minutes=90)
    assert hints.skip_hours == {0, 7}  # 24 is midnight in feeds that count 1-24
    assert hints.skip_days == {5, 6}


@pytest.mark.parametrize(
    "body",
    [
        b"<?xml version='1.0'?><feed xmlns='http://www.w3.org/2005/Atom'><title>t</title></feed>",
        b'{"version": "https://jsonfeed.org/version/1.1", "items": []}',
        b"\x00\x01 not xml at all",
        b"",
    ],
)
def test_no_hints_is_never_an_error(body: bytes) -> None:
    assert parse_hints(inline(body, None)) == FeedHints()


def test_a_byte_order_mark_outranks_a_wrong_label() -> None:
    body = _rss("<?xml version='1.0'?>").encode("utf-16")
    [entry] = parse_feed(inline(body, "text/xml; charset=iso-8859-1"), SOURCE)
    assert entry.title == _TITLE


@pytest.mark.parametrize(
    ("name", "salvaged"),
    [
        ("malformed.xml", True),
        ("rss2.xml", False),
        ("latin1.xml", False),
        ("jsonfeed11.json", False),
    ],
)
def test_salvage_is_reported_only_for_broken_markup(name: str, salvaged: bool) -> None:
    entries, note = parse_feed_salvaged(fetched(name), SOURCE)
    assert entries == parse_feed(fetched(name), SOURCE)
    assert (note is not None) == salvaged
    if note is not None:
        assert note.startswith(f"malformed feed salvaged ({len(entries)} entries read): ")
