"""The feed server over a real loopback socket: validators and 304s, gzip, HEAD, hostile paths,
the index, OPML, the WebSub Link header and archive pages."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from lxml import etree

from bot.server import (
    FeedCatalog,
    FeedServer,
    FeedServerError,
    RenderedFeed,
    accepts_gzip,
    archive_path,
    make_app,
)

PUBLIC_URL = "https://news.example.org/"
MODIFIED = datetime(2026, 3, 4, 10, 0, 15, 500_000, tzinfo=UTC)
BODY = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed>" + b"<entry/>" * 200 + b"</feed>\n"


HUB = "https://hub.example.net/"


def make_catalog() -> FeedCatalog:
    catalog = FeedCatalog()
    catalog.put(RenderedFeed.of("feeds/ukraine.atom", "Ukraine <watch> & co", BODY, MODIFIED))
    catalog.put(RenderedFeed.of("feeds/all.atom", "Everything", b"<feed/>", MODIFIED))
    catalog.put(
        RenderedFeed.of("feeds/climate.atom", 'Climate "quoted"', b"<feed>c</feed>", MODIFIED)
    )
    catalog.put(RenderedFeed.of("sources/bbc.atom", "BBC (full text)", b"<feed>b</feed>", MODIFIED))
    catalog.put(
        RenderedFeed.of(
            "feeds/ukraine/archive/1.atom", "Ukraine", b"<feed>old</feed>", MODIFIED, listed=False
        )
    )
    return catalog


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    feed_server = FeedServer(
        make_app(make_catalog(), site_title="News <&> watch", public_url=PUBLIC_URL, hub_url=HUB),
        "127.0.0.1",
        0,
    )
    await feed_server.start()
    yield feed_server
    await feed_server.stop()


@pytest.fixture
async def client(server: FeedServer) -> AsyncIterator[httpx.AsyncClient]:
    # Accept-Encoding is set per test: httpx would otherwise ask for gzip (and br, zstd) itself.
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", headers={"Accept-Encoding": "identity"}
    ) as http:
        yield http


def test_rendered_feed_etag_is_quoted_sha256_prefix() -> None:
    feed = RenderedFeed.of("feeds/all.atom", "All", b"abc", MODIFIED)
    assert feed.etag == '"ba7816bf8f01cfea414140de5dae2223"'
    assert RenderedFeed.of("feeds/all.atom", "Other title", b"abc", MODIFIED).etag == feed.etag
    assert RenderedFeed.of("feeds/all.atom", "All", b"abd", MODIFIED).etag != feed.etag


def test_rendered_feed_is_gzipped_once_and_deterministically() -> None:
    feed = RenderedFeed.of("feeds/all.atom", "All", BODY, MODIFIED)
    assert gzip.decompress(feed.gzipped) == BODY
    assert RenderedFeed.of("feeds/all.atom", "All", BODY, MODIFIED).gzipped == feed.gzipped


@pytest.mark.parametrize(
    "path",
    [
        "",
        "all",
        "feeds/All.atom",
        "feeds/../x.atom",
        "feeds/a.b.atom",
        "feeds/-a.atom",
        "feeds/" + "a" * 65 + ".atom",
        "other/a.atom",
        "feeds/a/archive/0.atom",
        "feeds/a/archive/01.atom",
        "feeds/a/archive/x.atom",
        "/feeds/a.atom",
    ],
)
def test_rendered_feed_refuses_paths_it_could_not_serve(path: str) -> None:
    with pytest.raises(ValueError):
        RenderedFeed.of(path, "t", b"", MODIFIED)


@pytest.mark.parametrize(
    "path", ["feeds/all.atom", "sources/bbc-world.atom", "feeds/x_1/archive/12.atom"]
)
def test_rendered_feed_accepts_every_kind_of_document(path: str) -> None:
    assert RenderedFeed.of(path, "t", b"", MODIFIED).path == path


def test_rendered_feed_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError):
        RenderedFeed.of("feeds/all.atom", "t", b"", datetime(2026, 1, 1))


def test_archive_path() -> None:
    assert archive_path("feeds/ukraine.atom", 3) == "feeds/ukraine/archive/3.atom"
    with pytest.raises(ValueError):
        archive_path("feeds/ukraine.atom", 0)


def test_catalog_lists_watchlist_feeds_all_first_then_sources_and_no_archives() -> None:
    catalog = make_catalog()
    assert [feed.path for feed in catalog.listed()] == [
        "feeds/all.atom",
        "feeds/climate.atom",
        "feeds/ukraine.atom",
        "sources/bbc.atom",
    ]
    replacement = RenderedFeed.of("feeds/climate.atom", "Climate", b"new", MODIFIED)
    catalog.put(replacement)
    assert catalog.get("feeds/climate.atom") == replacement
    assert catalog.get("feeds/nope.atom") is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("br;q=1.0, GZIP;q=0.5", True),
        ("gzip;q=0", False),
        ("gzip;q=0.0", False),
        ("identity", False),
        ("*", False),
        ("", False),
        ("gzipx", False),
    ],
)
def test_accepts_gzip(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


async def test_feed_is_served_with_validators(client: httpx.AsyncClient) -> None:
    response = await client.get("/feeds/ukraine.atom")
    assert response.status_code == 200
    assert response.content == BODY
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert response.headers["etag"] == RenderedFeed.of("feeds/a.atom", "", BODY, MODIFIED).etag
    assert response.headers["last-modified"] == "Wed, 04 Mar 2026 10:00:15 GMT"
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in response.headers


async def test_head_has_headers_and_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/feeds/ukraine.atom")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(BODY))
    assert response.headers["etag"].startswith('"')


@pytest.mark.parametrize(
    "if_none_match",
    [
        "{etag}",
        "W/{etag}",
        '"other", {etag}',
        '"other",W/{etag} , "more"',
        "*",
        "{gzip_etag}",
    ],
)
async def test_if_none_match_gives_304(client: httpx.AsyncClient, if_none_match: str) -> None:
    etag = (await client.get("/feeds/ukraine.atom")).headers["etag"]
    header = if_none_match.format(etag=etag, gzip_etag=etag[:-1] + '-gzip"')
    response = await client.get("/feeds/ukraine.atom", headers={"If-None-Match": header})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "public, max-age=300"


async def test_if_none_match_mismatch_gives_200_even_if_not_modified_since(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/feeds/ukraine.atom",
        headers={"If-None-Match": '"stale"', "If-Modified-Since": "Thu, 01 Jan 2099 00:00:00 GMT"},
    )
    assert response.status_code == 200
    assert response.content == BODY


@pytest.mark.parametrize(
    ("if_modified_since", "status"),
    [
        ("Wed, 04 Mar 2026 10:00:15 GMT", 304),
        ("Thu, 05 Mar 2026 00:00:00 GMT", 304),
        ("Wed, 04 Mar 2026 10:00:14 GMT", 200),
        ("not a date", 200),
    ],
)
async def test_if_modified_since(
    client: httpx.AsyncClient, if_modified_since: str, status: int
) -> None:
    response = await client.get(
        "/feeds/ukraine.atom", headers={"If-Modified-Since": if_modified_since}
    )
    assert response.status_code == status


async def test_gzip_when_asked_with_its_own_etag(client: httpx.AsyncClient) -> None:
    plain = await client.get("/feeds/ukraine.atom")
    request = client.build_request(
        "GET", "/feeds/ukraine.atom", headers={"Accept-Encoding": "gzip"}
    )
    response = await client.send(request, stream=True)
    raw = await response.aread()  # decoded by httpx
    await response.aclose()
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert raw == BODY
    assert int(response.headers["content-length"]) < len(BODY)
    assert response.headers["etag"] == plain.headers["etag"][:-1] + '-gzip"'
    again = await client.get("/feeds/ukraine.atom", headers={"Accept-Encoding": "gzip"})
    assert again.headers["etag"] == response.headers["etag"]
    revalidated = await client.get(
        "/feeds/ukraine.atom",
        headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["etag"]},
    )
    assert revalidated.status_code == 304


@pytest.mark.parametrize(
    "path",
    [
        "/feeds/unknown.atom",
        "/feeds/Ukraine.atom",
        "/feeds/ukraine.rss",
        "/feeds/ukraine",
        "/feeds/..%2Fetc%2Fpasswd.atom",
        "/feeds/%2e%2e.atom",
        "/feeds/%2e%2e%2fserver.atom",
        "/feeds/ukraine%00.atom",
        "/feeds/-x.atom",
        "/feeds/" + "a" * 5000 + ".atom",
        "/etc/passwd",
        "/feeds/",
        "/feeds/ukraine/archive/2.atom",
        "/feeds/ukraine/archive/1.atom/",
        "/sources/ukraine.atom",
        "/feeds//ukraine.atom",
        "/feeds/ukraine.atom/",
        "/FEEDS/ukraine.atom",
        "/feeds/ukraine.atom;x",
        "/opml/../feeds/ukraine.atom/x",
    ],
)
async def test_hostile_and_unknown_names_are_404(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 404


async def test_dot_segments_do_not_escape(client: httpx.AsyncClient) -> None:
    # httpx would normalise "../" away; send it raw so the server sees it.
    request = client.build_request("GET", "/")
    request.url = request.url.copy_with(raw_path=b"/feeds/../../etc/passwd.atom")
    response = await client.send(request)
    assert response.status_code == 404


async def test_index_lists_feeds_with_autodiscovery(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    head = page[: page.index("</head>")]
    assert "<title>News &lt;&amp;&gt; watch</title>" in head
    assert (
        '<link rel="alternate" type="application/atom+xml" title="Ukraine &lt;watch&gt; &amp; co"'
        ' href="https://news.example.org/feeds/ukraine.atom">'
    ) in head
    assert 'title="Climate &quot;quoted&quot;"' in head
    assert head.index("/feeds/all.atom") < head.index("/feeds/climate.atom")
    body = page[page.index("<body>") :]
    assert "Ukraine &lt;watch&gt; &amp; co" in body
    assert "https://news.example.org/feeds/all.atom" in body
    assert "<watch>" not in page
    assert "https://news.example.org/sources/bbc.atom" in head
    assert "archive" not in page
    assert body.index("/feeds/ukraine.atom") < body.index("/sources/bbc.atom")
    assert 'href="https://news.example.org/opml"' in body


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.text == "ok"


async def test_feed_updates_are_served_without_restart() -> None:
    catalog = make_catalog()
    feed_server = FeedServer(make_app(catalog, public_url=PUBLIC_URL), "127.0.0.1", 0)
    await feed_server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{feed_server.port}") as http:
            before = await http.get("/feeds/all.atom")
            catalog.put(
                RenderedFeed.of("feeds/all.atom", "Everything", b"<feed>new</feed>", MODIFIED)
            )
            after = await http.get(
                "/feeds/all.atom", headers={"If-None-Match": before.headers["etag"]}
            )
            assert after.status_code == 200
            assert after.content == b"<feed>new</feed>"
    finally:
        await feed_server.stop()


async def test_stop_is_prompt_even_with_an_open_keep_alive_connection() -> None:
    feed_server = FeedServer(make_app(make_catalog(), public_url=PUBLIC_URL), "127.0.0.1", 0)
    await feed_server.start()
    assert feed_server.port != 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{feed_server.port}") as http:
        assert (await http.get("/healthz")).status_code == 200
        started = time.monotonic()
        await asyncio.wait_for(feed_server.stop(), timeout=5)
        assert time.monotonic() - started < 5
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{feed_server.port}/healthz")


async def test_start_fails_cleanly_when_the_port_is_taken(server: FeedServer) -> None:
    second = FeedServer(make_app(FeedCatalog(), public_url=PUBLIC_URL), "127.0.0.1", server.port)
    with pytest.raises(FeedServerError):
        await second.start()
    await second.stop()  # nothing to stop: must not hang or raise


async def test_archive_pages_and_source_feeds_are_served(client: httpx.AsyncClient) -> None:
    archive = await client.get("/feeds/ukraine/archive/1.atom")
    assert archive.status_code == 200
    assert archive.content == b"<feed>old</feed>"
    assert archive.headers["content-type"] == "application/atom+xml; charset=utf-8"
    source = await client.get("/sources/bbc.atom")
    assert source.content == b"<feed>b</feed>"
    again = await client.get("/sources/bbc.atom", headers={"If-None-Match": source.headers["etag"]})
    assert again.status_code == 304


async def test_query_strings_do_not_change_what_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/feeds/ukraine.atom?x=../../etc/passwd&name=all")
    assert response.content == BODY


async def test_feeds_name_the_websub_hub_and_themselves_in_a_link_header(
    client: httpx.AsyncClient,
) -> None:
    for path in ("/feeds/ukraine.atom", "/feeds/ukraine/archive/1.atom"):
        response = await client.get(path)
        assert response.headers["link"] == (
            f'<{HUB}>; rel="hub", <https://news.example.org{path}>; rel="self"'
        )
    etag = (await client.get("/feeds/ukraine.atom")).headers["etag"]
    not_modified = await client.get("/feeds/ukraine.atom", headers={"If-None-Match": etag})
    assert "link" in not_modified.headers


async def test_no_link_header_without_a_hub() -> None:
    feed_server = FeedServer(make_app(make_catalog(), public_url=PUBLIC_URL), "127.0.0.1", 0)
    await feed_server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{feed_server.port}") as http:
            assert "link" not in (await http.get("/feeds/ukraine.atom")).headers
    finally:
        await feed_server.stop()


async def test_opml_lists_every_subscription_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/opml")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/x-opml; charset=utf-8"
    root = etree.fromstring(response.content)
    assert root.tag == "opml" and root.get("version") == "2.0"
    assert root.findtext("head/title") == "News <&> watch"
    groups = root.findall("body/outline")
    assert [group.get("text") for group in groups] == ["Watchlists", "Full-text sources"]
    feeds = [
        (outline.get("type"), outline.get("text"), outline.get("xmlUrl"))
        for group in groups
        for outline in group.iterfind("outline")
    ]
    assert feeds == [
        ("rss", "Everything", "https://news.example.org/feeds/all.atom"),
        ("rss", 'Climate "quoted"', "https://news.example.org/feeds/climate.atom"),
        ("rss", "Ukraine <watch> & co", "https://news.example.org/feeds/ukraine.atom"),
        ("rss", "BBC (full text)", "https://news.example.org/sources/bbc.atom"),
    ]
    assert (await client.get("/opml")).content == response.content


async def test_icon_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/icon.svg")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    assert etree.fromstring(response.content).tag == "{http://www.w3.org/2000/svg}svg"


async def test_documents_answer_only_get_and_head(client: httpx.AsyncClient) -> None:
    response = await client.post("/feeds/ukraine.atom", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    etag = (await client.get("/feeds/ukraine.atom")).headers["etag"]
    head = await client.head("/feeds/ukraine.atom", headers={"If-None-Match": etag})
    assert head.status_code == 304


async def test_unknown_pages_outside_the_feeds_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/feeds.atom", "/opml.xml", "/icon.png", "/source/bbc.atom", "/robots.txt"):
        assert (await client.get(path)).status_code == 404, path
