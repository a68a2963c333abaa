"""The loopback site measures what a client's per-host delay must guarantee: the shortest time
between two requests reaching it (bench/ingest checks wirewatch's `fetch.host_delay` with it)."""

from __future__ import annotations

import http.client
import time

from bot.sample_site import SampleSite


def get(site: SampleSite, path: str) -> None:
    host, port = site.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    connection.request("GET", path)
    connection.getresponse().read()
    connection.close()


def test_the_shortest_gap_between_requests_is_measured_and_reset() -> None:
    with SampleSite() as site:
        site.set_file("/a", b"a", "text/plain")
        assert site.min_start_gap is None
        get(site, "/a")
        assert site.min_start_gap is None  # one request: no gap yet
        time.sleep(0.3)
        get(site, "/a")
        first = site.min_start_gap
        assert first is not None and first >= 0.25
        get(site, "/a")  # at once: the shortest gap is now this one
        second = site.min_start_gap
        assert second is not None and second < first
        site.clear_requests()
        assert site.min_start_gap is None
