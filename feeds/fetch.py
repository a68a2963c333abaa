"""URL → FetchResult | NotModified: one polite, bounded HTTP GET.

Polite: an honest User-Agent, conditional GET with the validators of the last poll (a 304 costs the
publisher almost nothing), compressed transfer. Bounded: connect and read timeouts, a total deadline
on top (a server trickling one byte a second never trips a read timeout), a cap on redirects and on
body size (the stream is abandoned as soon as the cap is passed, never buffered whole).

Every failure is sorted here, once, into a `FetchError` of one `FetchErrorKind`: callers never see
an httpx exception or look at a status code.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import ssl
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from feeds.body import body_chunks
from feeds.cadence import freshness_lifetime
from feeds.connector import guard_connections, guarding
from feeds.errors import FetchError, FetchErrorKind
from feeds.models import ConditionalHeaders, FetchResult, NotModified
from feeds.netguard import AddressPolicy, BlockedAddress, check_url
from feeds.politeness import RequestGate
from feeds.resend import OnSend, StaleConnectionResend

__all__ = [
    "DEFAULT_USER_AGENT",
    "FEED_ACCEPT",
    "PAGE_ACCEPT",
    "FetchLimits",
    "fetch",
    "make_client",
    "parse_retry_after",
]


def _package_version() -> str:
    try:
        return version("wirewatch")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


DEFAULT_USER_AGENT = (
    f"wirewatch/{_package_version()} (+https://github.com/wirewatch/wirewatch; news watch bot)"
)
"""Says who we are and where to complain, so publishers can tell us apart from scrapers."""

FEED_ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)
PAGE_ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.1"

_ACCEPT_ENCODING = "gzip, deflate, br"
_HOST = re.compile(r"[A-Za-z0-9._-]+|[0-9A-Fa-f:.]+")
"""What a host can be once httpx has IDNA-encoded it: a DNS name, an IPv4 or an IPv6 address."""


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """Bounds on one fetch. Timeouts in seconds; `total_timeout` covers redirects and the body."""

    connect_timeout: float = 10
    read_timeout: float = 20
    total_timeout: float = 60
    max_bytes: int = 10 * 1024 * 1024
    """Cap on the decoded body; the fetch fails with TOO_LARGE as soon as it is passed."""
    max_redirects: int = 5


def make_client(
    user_agent: str, limits: FetchLimits = FetchLimits(), connections: int = 100
) -> httpx.AsyncClient:
    """A client configured for `fetch`: share one per process so connections are reused.

    `connections` is at least the number of requests the caller lets out at once (the host
    gate's total): with fewer, a request that passed its host's turn would queue for a pooled
    connection (and fail after the pool timeout), and reach the host later than its turn, closer
    to the next request than the per-host delay allows. Every connection may be kept alive, so
    a re-poll reuses the one its host's last request opened.

    Its connections obey the address policy a `fetch` passes (feeds.connector).

    The caller owns it and must close it (`async with make_client(...) as client:`).
    """
    pool = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    options: dict[str, Any] = {
        "headers": {"User-Agent": user_agent, "Accept-Encoding": _ACCEPT_ENCODING},
        "timeout": _timeout(limits),
        "follow_redirects": True,
        "max_redirects": limits.max_redirects,
    }
    if _environment_proxies():
        # httpx ignores HTTP(S)_PROXY once a transport is passed, and behind a proxy the proxy
        # resolves names, so there is no address for the connection guard to check: use httpx's
        # own proxy-aware transports (URLs are still checked before each request and redirect).
        return httpx.AsyncClient(verify=_ssl_context(), limits=pool, **options)
    transport = httpx.AsyncHTTPTransport(verify=_ssl_context(), limits=pool)
    return httpx.AsyncClient(transport=guard_connections(transport), **options)


def _environment_proxies() -> bool:
    """Whether the environment names an HTTP(S) proxy (http_proxy, HTTPS_PROXY, ALL_PROXY...)."""
    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def _timeout(limits: FetchLimits) -> httpx.Timeout:
    """httpx's per-phase timeouts for `limits`: sending is bounded like reading, and waiting for a
    pooled connection like connecting. (The total deadline is not httpx's: `fetch` applies it.)"""
    return httpx.Timeout(
        connect=limits.connect_timeout,
        read=limits.read_timeout,
        write=limits.read_timeout,
        pool=limits.connect_timeout,
    )


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    """httpx's default verifying context, built once: loading the CA bundle takes tens of ms."""
    return httpx.create_ssl_context()


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    validators: ConditionalHeaders | None = None,
    *,
    limits: FetchLimits = FetchLimits(),
    accept: str = FEED_ACCEPT,
    gate: RequestGate | None = None,
    policy: AddressPolicy | None = None,
) -> FetchResult | NotModified:
    """GET `url`, conditionally when `validators` are given.

    Returns the 2xx response read whole (within `limits.max_bytes`), or NotModified on 304.
    Raises FetchError and nothing else. `limits.max_redirects` and the connect/read timeouts are
    applied per request here too, so a client not built by `make_client` is still bounded.

    With a `gate`, the request waits for its host's turn first; the wait is not counted in
    `limits.total_timeout`, which bounds only the time the server takes. A GET resent because
    its kept-alive connection turned out closed (feeds.resend) is the same request: same turn,
    same deadline. Each request that goes on the wire (redirect hops and a resend too) also
    awaits `gate.sending` before it is handed to the client, and calls `gate.sent` once its
    head has been written; that wait is not counted in the timeout either.

    With a `policy`, `url` and every redirect hop must be hosts it allows (else FetchError of
    kind BLOCKED, before any request to them), and so must the addresses connected to, when the
    client was built by `make_client` (feeds.connector). None: no address is refused, unless
    the caller is inside a `feeds.connector.guarding` block (then its connections obey that).
    """
    _check_url(url)
    with guarding(policy) if policy is not None else contextlib.nullcontext():
        if gate is None:
            return await _fetch(client, url, validators, limits, accept, policy)
        async with gate.slot(url):
            return await _fetch(client, url, validators, limits, accept, policy, gate)


async def _fetch(
    client: httpx.AsyncClient,
    url: str,
    validators: ConditionalHeaders | None,
    limits: FetchLimits,
    accept: str,
    policy: AddressPolicy | None = None,
    on_send: OnSend | None = None,
) -> FetchResult | NotModified:
    headers = {"Accept": accept}
    if validators is not None:
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
    try:
        async with asyncio.timeout(limits.total_timeout) as deadline:
            request = client.build_request("GET", url, headers=headers, timeout=_timeout(limits))
            spaced = _DeadlinePaused(on_send, deadline) if on_send is not None else None
            response, permanent = await _send(client, request, limits.max_redirects, policy, spaced)
            try:
                return await _read(response, url, permanent, validators, limits.max_bytes)
            finally:
                await response.aclose()
    except TimeoutError:
        raise FetchError(
            FetchErrorKind.TIMEOUT, f"no complete answer within {limits.total_timeout:g}s", url=url
        ) from None
    except httpx.TimeoutException as error:
        raise FetchError(FetchErrorKind.TIMEOUT, _describe(error), url=url) from error
    except BlockedAddress as error:
        hop = f"redirect to {error.url}: " if error.url not in (None, url) else ""
        raise FetchError(FetchErrorKind.BLOCKED, hop + str(error), url=url) from None
    except httpx.TooManyRedirects as error:
        raise FetchError(
            FetchErrorKind.TOO_MANY_REDIRECTS,
            f"more than {limits.max_redirects} redirects",
            url=url,
        ) from error
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        # Also reached when a redirect points somewhere we cannot go (ftp:, a broken Location).
        raise FetchError(FetchErrorKind.INVALID_URL, _describe(error), url=url) from error
    except (httpx.HTTPError, OSError) as error:
        # Refused, reset, DNS, TLS, a protocol violation or an undecodable body: the transport
        # did not give us a usable answer.
        raise FetchError(FetchErrorKind.CONNECTION, _describe(error), url=url) from error


class _DeadlinePaused:
    """Passes a request's `sending`/`sent` on to the gate, and moves the fetch's deadline back by
    the time `sending` held the request: the total timeout bounds how long the server takes, not
    how long we wait to be polite (a turn that comes late because the host's previous request
    left late must not turn into a timeout for a request never sent)."""

    def __init__(self, gate: OnSend, deadline: asyncio.Timeout) -> None:
        self._gate = gate
        self._deadline = deadline

    async def sending(self, url: str) -> None:
        loop = asyncio.get_running_loop()
        started, when = loop.time(), self._deadline.when()
        self._deadline.reschedule(None)
        try:
            await self._gate.sending(url)
        finally:
            if when is not None:
                self._deadline.reschedule(when + loop.time() - started)

    def sent(self, url: str) -> None:
        self._gate.sent(url)


async def _send(
    client: httpx.AsyncClient,
    request: httpx.Request,
    max_redirects: int,
    policy: AddressPolicy | None = None,
    on_send: OnSend | None = None,
) -> tuple[httpx.Response, str | None]:
    """Send following at most `max_redirects` redirects, whatever the client was built with,
    each hop checked against `policy` before it is sent.

    Also returns where the redirects led if every one of them was permanent (301/308), else None:
    a temporary hop anywhere in the chain means the publisher may move back.

    One request of the chain may be sent twice, when a kept-alive connection turned out closed
    (feeds.resend): that is the same request for the gate slot and the deadline the caller holds.
    """
    permanent: str | None = None
    all_permanent = True
    sender = StaleConnectionResend(client, on_send)
    for _ in range(max_redirects + 1):
        if policy is not None:
            await check_url(str(request.url), policy)
        response = await sender.send(request)
        if not response.has_redirect_location:
            return response, permanent if all_permanent else None
        await response.aclose()
        next_request = response.next_request
        if next_request is None:  # pragma: no cover - has_redirect_location implies one
            return response, None
        all_permanent = all_permanent and response.status_code in (301, 308)
        permanent = str(next_request.url)
        request = next_request
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=request)


async def _read(
    response: httpx.Response,
    requested_url: str,
    permanent_url: str | None,
    validators: ConditionalHeaders | None,
    max_bytes: int,
) -> FetchResult | NotModified:
    final_url = str(response.url)
    fetched_at = datetime.now(UTC)
    received = _validators(response)
    lifetime = freshness_lifetime(
        response.headers.get("Cache-Control"), response.headers.get("Expires"), fetched_at
    )
    if response.status_code == 304:
        # Servers often omit validators on a 304; the ones we sent are still current then.
        sent = validators or ConditionalHeaders()
        return NotModified(
            url=final_url,
            validators=ConditionalHeaders(
                etag=received.etag or sent.etag,
                last_modified=received.last_modified or sent.last_modified,
            ),
            fetched_at=fetched_at,
            permanent_url=permanent_url,
            lifetime=lifetime,
        )
    if not 200 <= response.status_code < 300:
        raise FetchError(
            FetchErrorKind.HTTP_STATUS,
            f"HTTP {response.status_code} {response.reason_phrase}".strip()
            + _via(final_url, requested_url),
            url=requested_url,
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), fetched_at),
        )
    declared = response.headers.get("Content-Length", "")
    encoded = "Content-Encoding" in response.headers
    if declared.isdigit() and int(declared) > max_bytes and not encoded:
        raise _too_large(requested_url, final_url, max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in body_chunks(response):
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(requested_url, final_url, max_bytes)
        chunks.append(chunk)
    return FetchResult(
        requested_url=requested_url,
        url=final_url,
        status=response.status_code,
        content=b"".join(chunks),
        content_type=response.headers.get("Content-Type"),
        validators=received,
        fetched_at=fetched_at,
        permanent_url=permanent_url,
        lifetime=lifetime,
    )


# A Retry-After longer than this is read as this: a server may ask for a pause, not for silence
# (and a huge value would overflow the datetime arithmetic of whoever schedules the retry).
MAX_RETRY_AFTER_SECONDS = 7 * 24 * 3600.0


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Retry-After as seconds from `now`: delta-seconds or an HTTP-date, at most a week; None
    when unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_SECONDS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(max(0.0, (when - now).total_seconds()), MAX_RETRY_AFTER_SECONDS)


def _check_url(url: str) -> None:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as error:
        message = str(error) or "malformed URL"
        raise FetchError(FetchErrorKind.INVALID_URL, message, url=url) from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise FetchError(FetchErrorKind.INVALID_URL, "not an absolute http(s) URL", url=url)
    if not _HOST.fullmatch(parsed.raw_host.decode("ascii", "replace")):
        # httpx percent-encodes a host with spaces and would go on to ask DNS about it.
        raise FetchError(FetchErrorKind.INVALID_URL, "malformed host name", url=url)


def _validators(response: httpx.Response) -> ConditionalHeaders:
    return ConditionalHeaders(
        etag=response.headers.get("ETag") or None,
        last_modified=response.headers.get("Last-Modified") or None,
    )


def _too_large(requested_url: str, final_url: str, max_bytes: int) -> FetchError:
    message = f"body larger than {max_bytes} bytes" + _via(final_url, requested_url)
    return FetchError(FetchErrorKind.TOO_LARGE, message, url=requested_url)


def _via(final_url: str, requested_url: str) -> str:
    """Where a redirected request ended up, for the message (errors carry the URL asked for)."""
    return "" if final_url == requested_url else f" at {final_url}"


def _describe(error: Exception) -> str:
    return str(error) or type(error).__name__
