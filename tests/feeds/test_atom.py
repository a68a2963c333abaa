"""Atom rendering: golden bytes, determinism, RFC 4287 shape as feedparser sees it, hostile text."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from feeds.atom import (
    EMPTY_FEED_UPDATED,
    HISTORY_NS,
    AtomEntry,
    FeedMeta,
    Paging,
    render_atom,
    tag_uri,
)
from tests.support.atom_checks import validator_problems

GOLDEN = Path(__file__).parent.parent / "fixtures" / "atom"
ATOM = "{http://www.w3.org/2005/Atom}"

META = FeedMeta(
    feed_id="tag:news.example.org,2026:feed/ukraine",
    title="Ukraine — wirewatch",
    subtitle="Articles matching the watchlist “ukraine”",
    self_url="https://news.example.org/feeds/ukraine.atom",
    alternate_url="https://news.example.org/",
    author_name="wirewatch",
    icon_url="https://news.example.org/favicon.ico",
)

ENTRIES = (
    AtomEntry(
        entry_id="tag:news.example.org,2026:article/3",
        title="Talks resume in Geneva",
        link="https://outlet-a.example/world/talks-resume?ref=rss&amp=1",
        published=datetime(2026, 3, 4, 9, 30, tzinfo=UTC),
        updated=datetime(2026, 3, 4, 11, 0, 15, 999_999, tzinfo=timezone(timedelta(hours=1))),
        author="Jane Doe",
        source_title="Outlet A",
        summary="Delegations met again on Tuesday & agreed to continue.",
        content_html="<p>Delegations met again on <b>Tuesday</b> &amp; agreed to continue.</p>",
        categories=("ukraine", "diplomacy"),
    ),
    AtomEntry(
        entry_id="tag:news.example.org,2026:article/2",
        title="Grain corridor reopens",
        link="https://outlet-b.example/2026/03/03/grain",
        published=None,
        updated=datetime(2026, 3, 3, 18, 45, tzinfo=UTC),
        author=None,
        source_title="Outlet B",
        summary="Ships left Odesa for the first time in weeks.",
        content_html="<p>Ships left Odesa for the first time in weeks.</p>",
        categories=("ukraine",),
    ),
    AtomEntry(
        entry_id="tag:news.example.org,2026:article/1",
        title="Analysis: what the ceasefire means",
        link="https://outlet-a.example/analysis/ceasefire",
        published=datetime(2026, 3, 1, 7, 0, tzinfo=UTC),
        updated=datetime(2026, 3, 2, 8, 0, tzinfo=UTC),
        author="John Roe",
        source_title="Outlet A",
        summary="",
        content_html="<p>A long read.</p><ul><li>One</li><li>Two</li></ul>",
        categories=(),
    ),
)


def test_matches_golden_file() -> None:
    """After a deliberate change: rerun with WIREWATCH_REGENERATE_GOLDEN=1 and review the diff."""
    golden = GOLDEN / "three_entries.atom"
    rendered = render_atom(META, ENTRIES)
    if os.environ.get("WIREWATCH_REGENERATE_GOLDEN"):
        golden.write_bytes(rendered)
    assert rendered == golden.read_bytes()


def test_same_inputs_give_same_bytes() -> None:
    assert render_atom(META, ENTRIES) == render_atom(META, list(ENTRIES))


def test_feed_updated_is_newest_entry_updated_in_utc() -> None:
    root = etree.fromstring(render_atom(META, ENTRIES))
    assert root.findtext(f"{ATOM}updated") == "2026-03-04T10:00:15+00:00"


def test_entries_keep_the_given_order() -> None:
    root = etree.fromstring(render_atom(META, ENTRIES))
    ids = [entry.findtext(f"{ATOM}id") for entry in root.iterfind(f"{ATOM}entry")]
    assert ids == [entry.entry_id for entry in ENTRIES]


def test_no_generator_version() -> None:
    root = etree.fromstring(render_atom(META, ENTRIES))
    generator = root.find(f"{ATOM}generator")
    assert generator is not None
    assert generator.text == "wirewatch"
    assert dict(generator.attrib) == {}


def test_entry_links_are_alternate_html() -> None:
    root = etree.fromstring(render_atom(META, ENTRIES))
    links = [dict(link.attrib) for link in root.iterfind(f"{ATOM}entry/{ATOM}link")]
    assert links == [
        {"href": entry.link, "rel": "alternate", "type": "text/html"} for entry in ENTRIES
    ]


def test_entries_name_their_outlet_as_source() -> None:
    root = etree.fromstring(render_atom(META, ENTRIES))
    sources = [entry.findtext(f"{ATOM}source/{ATOM}title") for entry in root.iter(f"{ATOM}entry")]
    assert sources == ["Outlet A", "Outlet B", "Outlet A"]


def test_feedparser_reads_everything() -> None:
    parsed = feedparser.parse(render_atom(META, ENTRIES))
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "atom10"
    feed = parsed.feed
    assert feed.id == META.feed_id
    assert feed.title == META.title
    assert feed.subtitle == META.subtitle
    assert feed.author == "wirewatch"
    assert feed.icon == META.icon_url
    links = {link.rel: (link.href, link.type) for link in feed.links}
    assert links == {
        "self": (META.self_url, "application/atom+xml"),
        "alternate": (META.alternate_url, "text/html"),
    }
    assert [entry.id for entry in parsed.entries] == [entry.entry_id for entry in ENTRIES]
    first, second, third = parsed.entries
    assert first.link == ENTRIES[0].link
    assert first.published == "2026-03-04T09:30:00+00:00"
    assert first.updated == "2026-03-04T10:00:15+00:00"
    assert "published" not in second
    assert [entry.author for entry in parsed.entries] == ["Jane Doe", "Outlet B", "John Roe"]
    assert first.content[0].type == "text/html"
    assert first.content[0].value == ENTRIES[0].content_html
    assert first.summary_detail.type == "text/plain"
    assert first.summary == ENTRIES[0].summary
    assert [tag.term for tag in first.tags] == ["ukraine", "diplomacy"]
    assert "tags" not in third


def test_empty_feed_is_valid_and_stable() -> None:
    body = render_atom(META, [])
    assert body == render_atom(META, ())
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0
    assert parsed.entries == []
    assert parsed.feed.updated == EMPTY_FEED_UPDATED.isoformat()


def test_hostile_strings_stay_well_formed() -> None:
    hostile = AtomEntry(
        entry_id="tag:news.example.org,2026:article/\x00666",
        title="<script>alert(1)</script> & \x0bfriends\x1f \ud800",
        link="https://evil.example/?a=1&b=<2>",
        published=None,
        updated=datetime(2026, 1, 1, tzinfo=UTC),
        author="Mallory \x00<m@example>",
        source_title="Evil & Co\x0c",
        summary="nul\x00 vt\x0b ok",
        content_html='<p onclick="x()">]]></p><script>alert("x")</script>\x00',
        categories=("a&b", "\x00", "<c>"),
    )
    body = render_atom(META, [hostile])
    root = etree.fromstring(body)  # well-formed, or this raises
    entry = root.find(f"{ATOM}entry")
    assert entry is not None
    # Markup-like text in a title is declared as HTML and escaped: readers show it literally.
    title = entry.find(f"{ATOM}title")
    assert title is not None and title.get("type") == "html"
    assert title.text == "&lt;script&gt;alert(1)&lt;/script&gt; &amp; friends"
    assert entry.findtext(f"{ATOM}summary") == "nul vt ok"
    assert entry.findtext(f"{ATOM}content") == (
        '<p onclick="x()">]]></p><script>alert("x")</script>'
    )
    assert [c.get("term") for c in entry.iter(f"{ATOM}category")] == ["a&b", "<c>"]
    assert b"<script>" not in body
    parsed = feedparser.parse(body)
    assert parsed.bozo == 0
    assert parsed.entries[0].author == "Mallory <m@example>"


def test_naive_datetimes_are_refused() -> None:
    naive = dataclasses.replace(ENTRIES[0], updated=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone"):
        render_atom(META, [naive])


@pytest.mark.parametrize(
    ("authority", "date", "specific", "expected"),
    [
        ("news.example.org", "2026", "article/42", "tag:news.example.org,2026:article/42"),
        ("127.0.0.1:8080", "2026", "article/42", "tag:127.0.0.1-8080,2026:article/42"),
        ("News.Example.ORG", "2026-03", "feed/all", "tag:news.example.org,2026-03:feed/all"),
        ("bot@example.org", "2026-03-04", "x", "tag:bot@example.org,2026-03-04:x"),
        ("example.org", "2026", "a b#c%d/é?q=1", "tag:example.org,2026:a%20b%23c%25d/%C3%A9?q=1"),
        (" -my host- ", "2026", "", "tag:my-host,2026:"),
    ],
)
def test_tag_uri(authority: str, date: str, specific: str, expected: str) -> None:
    assert tag_uri(authority, date, specific) == expected


@pytest.mark.parametrize(
    ("authority", "date"),
    [
        ("example.org", "26"),
        ("example.org", "2026-13"),
        ("example.org", "2026-1-1"),
        (":::", "2026"),
    ],
)
def test_tag_uri_refuses_malformed_input(authority: str, date: str) -> None:
    with pytest.raises(ValueError):
        tag_uri(authority, date, "x")


ARCHIVE_META = dataclasses.replace(
    META,
    self_url="https://news.example.org/feeds/ukraine/archive/2.atom",
    hub_url="https://hub.example.net/",
    paging=Paging(
        archive=True,
        current_url="https://news.example.org/feeds/ukraine.atom",
        prev_archive_url="https://news.example.org/feeds/ukraine/archive/1.atom",
        next_archive_url="https://news.example.org/feeds/ukraine/archive/3.atom",
    ),
)
RELATED = dataclasses.replace(
    ENTRIES[1],
    summary="Ships left <b>Odesa</b> for the first time in weeks.",
    summary_type="html",
    related=(
        ("Outlet C", "https://outlet-c.example/grain"),
        ("Outlet C", "https://outlet-c.example/grain"),  # a repeat is written once
        ("Outlet B", ENTRIES[1].link),  # the entry's own article is not "related"
        ("", "https://outlet-d.example/g"),
    ),
    source_url="https://outlet-b.example/rss",
)


def test_archive_document_matches_golden_file() -> None:
    """Paging, hub, related links and an HTML summary, frozen as bytes (regenerate as above)."""
    golden = GOLDEN / "archive_page.atom"
    rendered = render_atom(ARCHIVE_META, [ENTRIES[0], RELATED])
    if os.environ.get("WIREWATCH_REGENERATE_GOLDEN"):
        golden.write_bytes(rendered)
    assert rendered == golden.read_bytes()


def test_paging_and_hub_links_follow_rfc_5005_and_websub() -> None:
    root = etree.fromstring(render_atom(ARCHIVE_META, ENTRIES))
    links = [(link.get("rel"), link.get("href")) for link in root.iterfind(f"{ATOM}link")]
    assert links == [
        ("self", ARCHIVE_META.self_url),
        ("alternate", "https://news.example.org/"),
        ("hub", "https://hub.example.net/"),
        ("current", "https://news.example.org/feeds/ukraine.atom"),
        ("prev-archive", "https://news.example.org/feeds/ukraine/archive/1.atom"),
        ("next-archive", "https://news.example.org/feeds/ukraine/archive/3.atom"),
    ]
    assert root.find(f"{{{HISTORY_NS}}}archive") is not None
    assert root.nsmap["fh"] == HISTORY_NS  # declared once, on the feed element
    parsed = feedparser.parse(etree.tostring(root))
    assert parsed.bozo == 0


def test_subscription_document_has_no_archive_marker() -> None:
    body = render_atom(
        dataclasses.replace(META, paging=Paging(prev_archive_url="https://x.example/1")), ENTRIES
    )
    root = etree.fromstring(body)
    assert root.find(f"{{{HISTORY_NS}}}archive") is None
    assert b"purl.org/syndication/history" not in body
    assert [link.get("rel") for link in root.iterfind(f"{ATOM}link")][-1] == "prev-archive"


def test_related_links_name_the_other_outlets() -> None:
    root = etree.fromstring(render_atom(META, [RELATED]))
    related = [
        dict(link.attrib)
        for link in root.iterfind(f"{ATOM}entry/{ATOM}link")
        if link.get("rel") == "related"
    ]
    assert related == [
        {
            "rel": "related",
            "type": "text/html",
            "href": "https://outlet-c.example/grain",
            "title": "Outlet C",
        },
        {"rel": "related", "type": "text/html", "href": "https://outlet-d.example/g"},
    ]
    [entry] = feedparser.parse(render_atom(META, [RELATED])).entries
    assert [link.href for link in entry.links if link.rel == "related"] == [
        "https://outlet-c.example/grain",
        "https://outlet-d.example/g",
    ]
    assert entry.summary_detail.type == "text/html"
    assert entry.source.links[0].href == "https://outlet-b.example/rss"


def test_related_links_are_empty_by_default() -> None:
    assert ENTRIES[0].related == ()
    root = etree.fromstring(render_atom(META, ENTRIES))
    assert [link.get("rel") for link in root.iter(f"{ATOM}link")].count("related") == 0


def test_entry_without_a_link_still_has_content() -> None:
    bare = dataclasses.replace(ENTRIES[2], link="", content_html="")
    body = render_atom(META, [bare])
    assert validator_problems(body, META.self_url) == []
    assert etree.fromstring(body).find(f"{ATOM}entry/{ATOM}content") is not None


@pytest.mark.parametrize(
    ("meta", "entries"),
    [
        (META, ENTRIES),
        (META, ()),
        (ARCHIVE_META, (ENTRIES[0], RELATED)),
        (
            META,
            (
                dataclasses.replace(
                    ENTRIES[0],
                    title="Why <b> & &amp; matter",
                    summary="x <p> y",
                    author=None,
                    source_title="",
                ),
            ),
        ),
    ],
)
def test_rendered_feeds_pass_the_validator_checks(
    meta: FeedMeta, entries: tuple[AtomEntry, ...]
) -> None:
    assert validator_problems(render_atom(meta, entries), meta.self_url) == []


_CLEAN = render_atom(META, ENTRIES).decode()


@pytest.mark.parametrize(
    ("broken", "served_url", "expected"),
    [
        (_CLEAN.replace('rel="self" ', ""), META.self_url, "MissingSelf"),
        (
            _CLEAN.replace(
                'rel="self" type="application/atom+xml"', 'rel="alternate" type="text/html"'
            ),
            None,
            "DuplicateAtomLink",
        ),
        (_CLEAN.replace('rel="self"', 'rel="via"'), META.self_url, "MissingSelf"),
        (_CLEAN, "https://news.example.org/other.atom", "SelfDoesntMatchLocation"),
        (
            _CLEAN.replace(
                "tag:news.example.org,2026:article/2", "tag:news.example.org,2026:article/1"
            ),
            None,
            "DuplicateEntries",
        ),
        (
            _CLEAN.replace("2026-03-03T18:45:00+00:00", "2026-03-03 18:45:00"),
            None,
            "InvalidRFC3339Date",
        ),
        (
            _CLEAN.replace("<title>Grain corridor reopens", "<title>Grain &lt;b&gt;corridor"),
            None,
            "ContainsUndeclaredHTML",
        ),
        (
            _CLEAN.replace("<author>\n      <name>Outlet B</name>\n    </author>", "").replace(
                "<author>\n    <name>wirewatch</name>\n  </author>", ""
            ),
            None,
            "MissingAuthor",
        ),
        (_CLEAN.replace('href="https://news.example.org/"', 'href="/"'), None, "RelativeHref"),
        (
            _CLEAN.replace("<feed ", '<feed xmlns:x="urn:x" ').replace("</feed>", "<x:y/></feed>"),
            None,
            "UndefinedElement",
        ),
        (
            _CLEAN.replace('org/" rel="alternate"', 'org/" rel="bogus"'),
            None,
            "UnregisteredAtomLinkRel",
        ),
    ],
)
def test_validator_checks_catch_what_they_claim(
    broken: str, served_url: str | None, expected: str
) -> None:
    assert broken != _CLEAN or served_url is not None
    problems = validator_problems(broken.encode(), served_url)
    assert any(problem.startswith(expected) for problem in problems), problems
