"""The feed server over a real loopback socket: validators and 304s, gzip, HEAD, hostile paths."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from bot.server import (
    FeedCatalog,
    FeedServer,
    FeedServerError,
    RenderedFeed,
    accepts_gzip,
    make_app,
)

PUBLIC_URL = "https://news.example.org/"
MODIFIED = datetime(2026, 3, 4, 10, 0, 15, 500_000, tzinfo=UTC)
BODY = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed>" + b"<entry/>" * 200 + b"</feed>\n"


def make_catalog() -> FeedCatalog:
    catalog = FeedCatalog()
    catalog.put(RenderedFeed.of("ukraine", "Ukraine <watch> & co", BODY, MODIFIED))
    catalog.put(RenderedFeed.of("all", "Everything", b"<feed/>", MODIFIED))
    catalog.put(RenderedFeed.of("climate", 'Climate "quoted"', b"<feed>c</feed>", MODIFIED))
    return catalog


@pytest.fixture
async def server() -> AsyncIterator[FeedServer]:
    feed_server = FeedServer(
        make_app(make_catalog(), site_title="News <&> watch", public_url=PUBLIC_URL),
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
    feed = RenderedFeed.of("all", "All", b"abc", MODIFIED)
    assert feed.etag == '"ba7816bf8f01cfea414140de5dae2223"'
    assert RenderedFeed.of("all", "Other title", b"abc", MODIFIED).etag == feed.etag
    assert RenderedFeed.of("all", "All", b"abd", MODIFIED).etag != feed.etag


@pytest.mark.parametrize("name", ["", "All", "../x", "a.b", "-a", "a" * 65])
def test_rendered_feed_refuses_names_it_could_not_serve(name: str) -> None:
    with pytest.raises(ValueError):
        RenderedFeed.of(name, "t", b"", MODIFIED)


def test_rendered_feed_refuses_naive_datetime() -> None:
    with pytest.raises(ValueError):
        RenderedFeed.of("all", "t", b"", datetime(2026, 1, 1))


def test_catalog_lists_all_first_then_by_name() -> None:
    catalog = make_catalog()
    assert [feed.name for feed in catalog.all()] == ["all", "climate", "ukraine"]
    replacement = RenderedFeed.of("climate", "Climate", b"new", MODIFIED)
    catalog.put(replacement)
    assert catalog.get("climate") == replacement
    assert catalog.get("nope") is None


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
    assert response.headers["etag"] == RenderedFeed.of("ukraine", "", BODY, MODIFIED).etag
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
            catalog.put(RenderedFeed.of("all", "Everything", b"<feed>new</feed>", MODIFIED))
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
