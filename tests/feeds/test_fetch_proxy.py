"""An HTTP(S)_PROXY set in the environment is used (httpx drops it when given a transport)."""

from __future__ import annotations

import httpx
import pytest

from bot.sample_site import SampleSite
from feeds.fetch import make_client


async def test_a_proxy_from_the_environment_carries_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with SampleSite() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        async with make_client("wirewatch-test") as client:
            # A name that never resolves: only a proxy can take this request anywhere.
            response = await client.get("http://feeds.wirewatch-proxy-test.invalid/feed.xml")
        assert response.status_code in (200, 400, 404)
        assert proxy.requests, "the request did not go through the proxy"


async def test_without_a_proxy_such_a_name_fails_to_connect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    async with make_client("wirewatch-test") as client:
        with pytest.raises(httpx.ConnectError):
            await client.get("http://feeds.wirewatch-proxy-test.invalid/feed.xml")
