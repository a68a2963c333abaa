"""robots.txt over loopback: obeyed for our product token, fetched once per site, and read the
RFC 9309 way when missing (allow) or unreachable (disallow for a while)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bot.sample_site import Response, SampleSite
from feeds.fetch import FetchLimits, make_client
from feeds.robots import RobotsCache

FAST = FetchLimits(connect_timeout=1, read_timeout=1, total_timeout=3)
RULES = b"""User-agent: *
Disallow: /private/

User-agent: wirewatch
Disallow: /no-bots/
"""


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client("wirewatch/1.0 (+https://example.org)", FAST) as http:
        yield http


def robots_paths(site: SampleSite) -> list[str]:
    return [r.path for r in site.requests if r.path == "/robots.txt"]


async def test_rules_for_our_token_are_obeyed_and_fetched_once(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    site.set_file("/robots.txt", RULES, "text/plain")
    robots = RobotsCache(client, "wirewatch/1.0 (+https://example.org)", limits=FAST)
    assert await robots.allowed(site.url("/news/a"))
    assert not await robots.allowed(site.url("/no-bots/a"))
    # A group naming us replaces the * group (RFC 9309 §2.2.1): /private/ is not ours to avoid.
    assert await robots.allowed(site.url("/private/a"))
    assert robots_paths(site) == ["/robots.txt"]


async def test_a_missing_robots_txt_allows_everything(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    robots = RobotsCache(client, "wirewatch", limits=FAST)
    assert await robots.allowed(site.url("/anything"))


async def test_an_unreachable_robots_txt_disallows_until_retried(
    site: SampleSite, client: httpx.AsyncClient
) -> None:
    now = [0.0]
    site.route("/robots.txt", lambda request: Response(503, {}, b"down"))
    robots = RobotsCache(
        client, "wirewatch", limits=FAST, retry_after_error=60, clock=lambda: now[0]
    )
    assert not await robots.allowed(site.url("/a"))
    assert not await robots.allowed(site.url("/b"))
    assert len(robots_paths(site)) == 1  # the failure is remembered, not retried per page
    site.route("/robots.txt", lambda request: Response(200, {"Content-Type": "text/plain"}, b""))
    now[0] = 61
    assert await robots.allowed(site.url("/a"))
    assert len(robots_paths(site)) == 2
