"""fetch() against a real socket on 127.0.0.1: caching, redirects, compression, limits, and every
failure sorted into one FetchErrorKind."""

from __future__ import annotations

import gzip
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from importlib.metadata import PackageNotFoundError

import brotli  # type: ignore[import-untyped]
import httpx
import pytest

from bot.sample_site import Request, Response, SampleSite
from feeds import fetch as fetch_module
from feeds.errors import FetchError, FetchErrorKind
from feeds.fetch import (
    DEFAULT_USER_AGENT,
    FEED_ACCEPT,
    PAGE_ACCEPT,
    FetchLimits,
    fetch,
    make_client,
    parse_retry_after,
)
from feeds.models import ConditionalHeaders, FetchResult, NotModified

USER_AGENT = "wirewatch-tests/1.0 (+https://github.com/wirewatch/wirewatch)"
FAST = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=3)
FEED = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>"
    + b"t" * 600
    + b"</title></channel></rss>"
)


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        running.set_file("/feed.xml", FEED, "application/rss+xml")
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(USER_AGENT, FAST) as http_client:
        yield http_client


async def fetch_error(
    client: httpx.AsyncClient, url: str, limits: FetchLimits = FAST
) -> FetchError:
    with pytest.raises(FetchError) as caught:
        await fetch(client, url, limits=limits)
    return caught.value


async def test_200_then_304_with_the_stored_validators(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    first = await fetch(client, site.url("/feed.xml"), limits=FAST)
    assert isinstance(first, FetchResult)
    assert (first.status, first.content, first.content_type) == (200, FEED, "application/rss+xml")
    assert first.validators.etag and first.validators.last_modified
    assert first.fetched_at.tzinfo is UTC

    second = await fetch(client, site.url("/feed.xml"), first.validators, limits=FAST)
    assert isinstance(second, NotModified)
    assert second.validators == first.validators
    sent = site.requests[-1].headers
    assert sent["if-none-match"] == first.validators.etag
    assert sent["if-modified-since"] == first.validators.last_modified


async def test_last_modified_alone_revalidates(site: SampleSite, client: httpx.AsyncClient) -> None:
    first = await fetch(client, site.url("/feed.xml"), limits=FAST)
    assert isinstance(first, FetchResult)
    only_date = ConditionalHeaders(last_modified=first.validators.last_modified)
    assert isinstance(
        await fetch(client, site.url("/feed.xml"), only_date, limits=FAST), NotModified
    )
    assert "if-none-match" not in site.requests[-1].headers


async def test_304_without_validators_keeps_the_ones_sent(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route("/bare304", lambda req: Response(304))
    sent = ConditionalHeaders(etag='"abc"', last_modified="Mon, 06 May 2024 09:30:00 GMT")
    result = await fetch(client, site.url("/bare304"), sent, limits=FAST)
    assert isinstance(result, NotModified)
    assert result.validators == sent


async def test_honest_headers_are_sent(site: SampleSite, client: httpx.AsyncClient) -> None:
    await fetch(client, site.url("/feed.xml"), limits=FAST)
    await fetch(client, site.url("/feed.xml"), limits=FAST, accept=PAGE_ACCEPT)
    feed_request, page_request = site.requests[-2:]
    assert feed_request.headers["user-agent"] == USER_AGENT
    assert feed_request.headers["accept"] == FEED_ACCEPT
    assert page_request.headers["accept"] == PAGE_ACCEPT
    assert {"gzip", "br"} <= {c.strip() for c in feed_request.headers["accept-encoding"].split(",")}


def test_default_user_agent_names_us_and_a_contact() -> None:
    assert DEFAULT_USER_AGENT.startswith("wirewatch/")
    assert "+https://" in DEFAULT_USER_AGENT


@pytest.mark.parametrize(
    ("installed", "expected"),
    [("1.2.3", "1.2.3"), (None, "0+unknown")],
    ids=["installed", "source-tree"],
)
def test_package_version(
    monkeypatch: pytest.MonkeyPatch, installed: str | None, expected: str
) -> None:
    def version(name: str) -> str:
        assert name == "wirewatch"
        if installed is None:
            raise PackageNotFoundError(name)
        return installed

    monkeypatch.setattr(fetch_module, "version", version)
    assert fetch_module._package_version() == expected


async def test_client_and_every_request_get_the_limits_timeouts() -> None:
    """make_client's defaults and fetch's per-request timeouts are the same mapping of limits:
    writes bounded like reads, waiting for a pooled connection like connecting."""
    limits = FetchLimits(connect_timeout=1.5, read_timeout=2.5, total_timeout=5)
    expected = httpx.Timeout(connect=1.5, read=2.5, write=2.5, pool=1.5)
    async with make_client(USER_AGENT, limits) as built:
        assert built.timeout == expected

    seen: list[object] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.extensions["timeout"])
        return httpx.Response(200, content=b"ok")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as plain:
        await fetch(plain, "https://feeds.example/x", limits=limits)
    assert seen == [expected.as_dict()]


async def test_redirect_is_followed_to_the_final_url(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route("/old", lambda req: Response(301, {"Location": "/moved"}))
    site.route("/moved", lambda req: Response(302, {"Location": site.url("/feed.xml")}))
    result = await fetch(client, site.url("/old"), limits=FAST)
    assert isinstance(result, FetchResult)
    assert (result.requested_url, result.url) == (site.url("/old"), site.url("/feed.xml"))
    assert result.content == FEED


async def test_redirects_are_capped(site: SampleSite, client: httpx.AsyncClient) -> None:
    site.route("/loop", lambda req: Response(302, {"Location": "/loop"}))
    error = await fetch_error(client, site.url("/loop"), FetchLimits(max_redirects=2))
    assert error.kind is FetchErrorKind.TOO_MANY_REDIRECTS
    assert len(site.requests) == 3


async def test_gzip_from_the_site_is_decoded(site: SampleSite, client: httpx.AsyncClient) -> None:
    result = await fetch(client, site.url("/feed.xml"), limits=FAST)
    assert isinstance(result, FetchResult)
    assert result.content == FEED
    assert result.validators.etag is not None and result.validators.etag.endswith('-gz"')


@pytest.mark.parametrize(("encoding", "encode"), [("gzip", gzip.compress), ("br", brotli.compress)])
async def test_compressed_bodies_are_decoded(
    site: SampleSite, client: httpx.AsyncClient, encoding: str, encode: Callable[[bytes], bytes]
) -> None:
    site.route("/enc", lambda req: Response(200, {"Content-Encoding": encoding}, encode(FEED)))
    result = await fetch(client, site.url("/enc"), limits=FAST)
    assert isinstance(result, FetchResult) and result.content == FEED


@pytest.mark.parametrize("compressed", [False, True], ids=["declared-length", "gzip-bomb"])
async def test_size_cap(site: SampleSite, client: httpx.AsyncClient, compressed: bool) -> None:
    body = b"a" * (2 * 1024 * 1024)
    headers = {"Content-Encoding": "gzip"} if compressed else {}
    site.route(
        "/big", lambda req: Response(200, headers, gzip.compress(body) if compressed else body)
    )
    limits = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=3, max_bytes=1024 * 1024)
    error = await fetch_error(client, site.url("/big"), limits)
    assert error.kind is FetchErrorKind.TOO_LARGE


async def test_body_at_the_cap_is_accepted(site: SampleSite, client: httpx.AsyncClient) -> None:
    limits = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=3, max_bytes=len(FEED))
    result = await fetch(client, site.url("/feed.xml"), limits=limits)
    assert isinstance(result, FetchResult) and len(result.content) == len(FEED)


async def test_a_silent_server_times_out_on_read(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route("/hang", lambda req: Response(200, {}, b"late", delay=5))
    limits = FetchLimits(connect_timeout=1, read_timeout=0.2, total_timeout=3)
    started = time.monotonic()
    error = await fetch_error(client, site.url("/hang"), limits)
    assert error.kind is FetchErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.5


async def test_a_trickling_server_hits_the_total_deadline(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route("/trickle", lambda req: Response(200, {}, b"x" * 200, trickle=0.02))
    limits = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=0.3)
    started = time.monotonic()
    error = await fetch_error(client, site.url("/trickle"), limits)
    assert error.kind is FetchErrorKind.TIMEOUT
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("status", [404, 410, 500, 503])
async def test_error_statuses(site: SampleSite, client: httpx.AsyncClient, status: int) -> None:
    site.route("/fail", lambda req: Response(status, {}, b"nope"))
    error = await fetch_error(client, site.url("/fail"))
    assert (error.kind, error.status, error.retry_after) == (
        FetchErrorKind.HTTP_STATUS,
        status,
        None,
    )


async def test_429_retry_after_seconds(site: SampleSite, client: httpx.AsyncClient) -> None:
    site.route("/slow-down", lambda req: Response(429, {"Retry-After": "120"}))
    error = await fetch_error(client, site.url("/slow-down"))
    assert (error.kind, error.status, error.retry_after) == (FetchErrorKind.HTTP_STATUS, 429, 120)


NOW = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("120", 120.0),
        (" 0 ", 0.0),
        (format_datetime(NOW + timedelta(minutes=5), usegmt=True), 300.0),
        (format_datetime(NOW - timedelta(minutes=5), usegmt=True), 0.0),
        ("soon", None),
        ("-5", None),
        ("9" * 400, 7 * 24 * 3600.0),  # absurd delays are capped, never inf
        ("Fri, 31 Dec 9999 23:59:59 GMT", 7 * 24 * 3600.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_connection_refused(client: httpx.AsyncClient) -> None:
    error = await fetch_error(client, f"http://127.0.0.1:{closed_port()}/feed.xml")
    assert error.kind is FetchErrorKind.CONNECTION


async def test_broken_gzip_is_a_connection_error(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route(
        "/bad-gzip", lambda req: Response(200, {"Content-Encoding": "gzip"}, b"not gzip at all")
    )
    error = await fetch_error(client, site.url("/bad-gzip"))
    assert error.kind is FetchErrorKind.CONNECTION


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://example.org/feed",
        "http://",
        "/relative/feed.xml",
        "http://exa mple.org/",
    ],
)
async def test_invalid_urls(client: httpx.AsyncClient, url: str) -> None:
    error = await fetch_error(client, url)
    assert (error.kind, error.url) == (FetchErrorKind.INVALID_URL, url)


async def test_redirect_to_another_scheme_is_an_invalid_url(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.route("/ftp", lambda req: Response(302, {"Location": "ftp://example.org/feed"}))
    error = await fetch_error(client, site.url("/ftp"))
    assert error.kind is FetchErrorKind.INVALID_URL


async def test_a_plain_client_is_still_bounded(site: SampleSite) -> None:
    """Limits passed to fetch() apply even to a client built elsewhere, without make_client."""
    site.route("/loop", lambda req: Response(302, {"Location": "/loop"}))
    async with httpx.AsyncClient() as plain:
        error = await fetch_error(plain, site.url("/loop"), FetchLimits(max_redirects=1))
    assert error.kind is FetchErrorKind.TOO_MANY_REDIRECTS


async def test_changing_content_gets_new_validators(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    def counter(req: Request) -> Response:
        return Response(200, {"ETag": f'"v{len(site.requests)}"'}, b"body")

    site.route("/counter", counter)
    first = await fetch(client, site.url("/counter"), limits=FAST)
    second = await fetch(client, site.url("/counter"), limits=FAST)
    assert isinstance(first, FetchResult) and isinstance(second, FetchResult)
    assert first.validators.etag != second.validators.etag


async def test_errors_name_the_url_asked_for(site: SampleSite, client: httpx.AsyncClient) -> None:
    site.route("/gone-old", lambda req: Response(301, {"Location": "/gone"}))
    site.route("/gone", lambda req: Response(410))
    error = await fetch_error(client, site.url("/gone-old"))
    assert (error.kind, error.status, error.url) == (
        FetchErrorKind.HTTP_STATUS,
        410,
        site.url("/gone-old"),
    )
    assert site.url("/gone") in error.message


@pytest.mark.parametrize(
    ("first", "second", "permanent"),
    [
        (301, 308, True),  # every hop permanent: the source has moved
        (308, None, True),
        (301, 302, False),  # a temporary hop anywhere: it may move back
        (302, 301, False),
        (307, None, False),
    ],
)
async def test_permanent_redirects_are_reported(
    site: SampleSite, client: httpx.AsyncClient, first: int, second: int | None, permanent: bool
) -> None:
    if second is None:
        site.route("/old", lambda req: Response(first, {"Location": "/feed.xml"}))
    else:
        site.route("/old", lambda req: Response(first, {"Location": "/middle"}))
        site.route("/middle", lambda req: Response(second, {"Location": "/feed.xml"}))
    result = await fetch(client, site.url("/old"), limits=FAST)
    assert result.permanent_url == (site.url("/feed.xml") if permanent else None)


async def test_no_redirect_means_no_move(site: SampleSite, client: httpx.AsyncClient) -> None:
    result = await fetch(client, site.url("/feed.xml"), limits=FAST)
    assert result.permanent_url is None


async def test_freshness_lifetime_is_read_from_200_and_304(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    def cached(request: Request) -> Response:
        headers = {"Cache-Control": "max-age=900", "ETag": '"v1"'}
        if request.headers.get("if-none-match") == '"v1"':
            return Response(304, headers)
        return Response(200, {**headers, "Content-Type": "application/rss+xml"}, FEED)

    site.route("/cached.xml", cached)
    first = await fetch(client, site.url("/cached.xml"), limits=FAST)
    again = await fetch(client, site.url("/cached.xml"), first.validators, limits=FAST)
    assert isinstance(again, NotModified)
    assert first.lifetime == again.lifetime == timedelta(seconds=900)
