"""WebSub publishing: tell the configured hub which feeds changed, so subscribers get them pushed.

WebSub (W3C Recommendation) leaves the publisher-to-hub step open; every public hub we know of
(Google's, Superfeedr, websub.rocks, Switchboard) accepts the PubSubHubbub form used here: a
form-encoded POST of ``hub.mode=publish`` and ``hub.url=<topic>``. One request per topic (sent
concurrently), because not every hub accepts several ``hub.url`` values in one request.

A hub that is down or refuses must never stop the bot or lose a feed update (readers still poll),
so failures are logged and returned, never raised.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import httpx

__all__ = ["HUB_TIMEOUT_SECONDS", "notify_hub"]

log = logging.getLogger("wirewatch.websub")

HUB_TIMEOUT_SECONDS = 5.0
"""A whole ping, connection to answer. Publishing waits for the pings (all sent at once), so a
hub that does not answer delays the alerts of that round by at most this."""


async def notify_hub(
    hub_url: str,
    topic_urls: Sequence[str],
    user_agent: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[str]:
    """Ping ``hub_url`` once per topic, concurrently; return one message per topic the hub did
    not accept (a 2xx answer is acceptance)."""
    async with httpx.AsyncClient(
        timeout=HUB_TIMEOUT_SECONDS, headers={"User-Agent": user_agent}, transport=transport
    ) as client:

        async def ping(topic: str) -> str | None:
            try:
                response = await client.post(
                    hub_url, data={"hub.mode": "publish", "hub.url": topic}
                )
            except httpx.HTTPError as error:
                return f"{topic}: {type(error).__name__}: {error}"
            if not response.is_success:
                return f"{topic}: hub answered {response.status_code}"
            return None

        outcomes = await asyncio.gather(*(ping(topic) for topic in topic_urls))
    failures = [outcome for outcome in outcomes if outcome is not None]
    for failure in failures:
        log.warning("WebSub hub %s was not told of a change: %s", hub_url, failure)
    return failures
