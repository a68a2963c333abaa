"""OPML import and export."""

from __future__ import annotations

import pytest

from feeds.opml import OpmlError, Outline, parse_opml, render_opml

READER_EXPORT = b"""<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0"><head><title>My feeds</title></head><body>
  <outline text="News" title="News">
    <outline type="rss" text="Kyiv Independent" xmlUrl="https://kyivindependent.com/feed/"
      htmlUrl="https://kyivindependent.com/"/>
    <outline text="No type" xmlUrl="https://n.example/rss.xml"/>
  </outline>
  <outline type="rss" title="Duplicate" xmlUrl="https://n.example/rss.xml"/>
  <outline type="link" text="Not a feed" url="https://n.example/"/>
  <outline type="rss" text="FTP" xmlUrl="ftp://n.example/feed"/>
</body></opml>"""


def test_import_reads_nested_outlines_once_each() -> None:
    assert parse_opml(READER_EXPORT) == [
        Outline(
            "https://kyivindependent.com/feed/", "Kyiv Independent", "https://kyivindependent.com/"
        ),
        Outline("https://n.example/rss.xml", "No type"),
    ]


@pytest.mark.parametrize(
    "content",
    [
        b"not xml",
        b"<rss version='2.0'/>",
        # an entity that would read a local file is never expanded
        b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<opml version="2.0"><body><outline text="&x;" xmlUrl="https://n.example/f"/></body></opml>',
    ],
)
def test_bad_or_hostile_files(content: bytes) -> None:
    try:
        outlines = parse_opml(content)
    except OpmlError:
        return
    assert all("root:" not in outline.title for outline in outlines)


def test_export_round_trips_and_is_deterministic() -> None:
    outlines = [
        Outline("https://n.example/f?a=1&b=2", "News & <Views>"),
        Outline("https://m.example/x"),
    ]
    document = render_opml("wirewatch sources", outlines)
    assert document == render_opml("wirewatch sources", outlines)
    assert document.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert parse_opml(document) == [
        Outline("https://n.example/f?a=1&b=2", "News & <Views>"),
        Outline("https://m.example/x", "https://m.example/x"),
    ]
