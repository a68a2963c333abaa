"""WebSub publishing: tell the configured hub which feeds changed, so subscribers get them pushed.

WebSub (W3C Recommendation) leaves the publisher-to-hub step open; every public hub we know of
(Google's, Superfeedr, websub.rocks, Switchboard) accepts the PubSubHubbub form used here: a
form-encoded POST of ``hub.mode=publish`` and ``hub.url=<topic>``. One request per topic, because
not every hub accepts several ``hub.url`` values in one request.

A hub that is down or refuses must never stop the bot or lose a feed update (readers still poll),
so failures are logged and returned, never raised.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import httpx

__all__ = ["HUB_TIMEOUT_SECONDS", "notify_hub"]

log = logging.getLogger("wirewatch.websub")

HUB_TIMEOUT_SECONDS = 10.0
"""A whole ping, connection to answer: publishing waits for it, so it is kept short."""


async def notify_hub(
    hub_url: str,
    topic_urls: Sequence[str],
    user_agent: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[str]:
    """Ping ``hub_url`` once per topic; return one message per topic the hub did not accept
    (a 2xx answer is acceptance)."""
    failures = []
    async with httpx.AsyncClient(
        timeout=HUB_TIMEOUT_SECONDS, headers={"User-Agent": user_agent}, transport=transport
    ) as client:
        for topic in topic_urls:
            try:
                response = await client.post(
                    hub_url, data={"hub.mode": "publish", "hub.url": topic}
                )
            except httpx.HTTPError as error:
                failures.append(f"{topic}: {type(error).__name__}: {error}")
                continue
            if not response.is_success:
                failures.append(f"{topic}: hub answered {response.status_code}")
    for failure in failures:
        log.warning("WebSub hub %s was not told of a change: %s", hub_url, failure)
    return failures
