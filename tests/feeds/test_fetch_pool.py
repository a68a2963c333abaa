"""make_client's connection pool is as big as the caller asks (the app asks for its concurrency):
a request the host gate let through must not wait for a pooled connection, which would make it
fail after the pool timeout, or reach its host later than its turn."""

from __future__ import annotations

import asyncio

from bot.sample_site import Response, SampleSite
from feeds.errors import FetchError
from feeds.fetch import FetchLimits, fetch, make_client

LIMITS = FetchLimits(connect_timeout=0.2, read_timeout=5, total_timeout=10)


async def three_slow_requests(site: SampleSite, connections: int) -> list[object]:
    async with make_client("wirewatch-test", LIMITS, connections=connections) as client:
        return await asyncio.gather(
            *(fetch(client, site.url(f"/slow?{n}"), limits=LIMITS) for n in range(3)),
            return_exceptions=True,
        )


async def test_the_pool_holds_as_many_connections_as_asked() -> None:
    with SampleSite() as site:
        site.route("/slow", lambda _: Response(body=b"ok", delay=0.5))
        enough = await three_slow_requests(site, 3)
        assert not any(isinstance(result, Exception) for result in enough)
        too_few = await three_slow_requests(site, 2)
        assert sum(isinstance(result, FetchError) for result in too_few) == 1  # pool timeout
