"""The loopback site must behave like a real, well-configured web server: the fetcher's caching and
compression are tested against it, so a mistake here would hide a mistake there."""

from __future__ import annotations

import gzip
import http.client
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest

from bot.sample_site import Request, Response, SampleSite

FEED_BODY = b"<rss version='2.0'><channel><title>" + b"x" * 400 + b"</title></channel></rss>"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    site_root = tmp_path / "site"
    (site_root / "feeds").mkdir(parents=True)
    (site_root / "feeds" / "world.xml").write_bytes(FEED_BODY)
    (site_root / "index.html").write_bytes(b"<html><body>home</body></html>")
    (tmp_path / "secret.txt").write_bytes(b"outside the root")
    return site_root


@pytest.fixture
def site(root: Path) -> Iterator[SampleSite]:
    with SampleSite(root) as running:
        yield running


def request(
    site: SampleSite,
    path: str,
    headers: Mapping[str, str] | None = None,
    method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    """A raw request, so nothing between the test and the server decodes or adds anything."""
    host, port = site.base_url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request(method, path, headers=dict(headers or {"Accept-Encoding": "identity"}))
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        connection.close()


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("a.xml", "application/rss+xml"),
        ("a.rss", "application/rss+xml"),
        ("a.atom", "application/atom+xml"),
        ("a.json", "application/feed+json"),
        ("a.html", "text/html; charset=utf-8"),
    ],
)
def test_content_type_by_extension(
    root: Path, site: SampleSite, name: str, content_type: str
) -> None:
    (root / name).write_bytes(b"{}")
    status, headers, body = request(site, f"/{name}")
    assert (status, headers["content-type"], body) == (200, content_type, b"{}")


def test_serves_root_files_with_validators(site: SampleSite) -> None:
    status, headers, body = request(site, "/feeds/world.xml")
    assert status == 200
    assert body == FEED_BODY
    assert headers["etag"].startswith('"') and not headers["etag"].startswith("W/")
    assert headers["last-modified"].endswith("GMT")
    assert headers["content-length"] == str(len(FEED_BODY))
    assert request(site, "/")[2] == b"<html><body>home</body></html>"


def test_if_none_match_gives_304(site: SampleSite) -> None:
    _, first, _ = request(site, "/feeds/world.xml")
    status, headers, body = request(site, "/feeds/world.xml", {"If-None-Match": first["etag"]})
    assert (status, body) == (304, b"")
    assert headers["etag"] == first["etag"]
    assert request(site, "/feeds/world.xml", {"If-None-Match": '"other"'})[0] == 200


def test_if_modified_since(root: Path, site: SampleSite) -> None:
    path = root / "feeds" / "world.xml"
    mtime = time.time() - 3600
    os.utime(path, (mtime, mtime))
    assert (
        request(
            site, "/feeds/world.xml", {"If-Modified-Since": formatdate(mtime + 10, usegmt=True)}
        )[0]
        == 304
    )
    assert (
        request(
            site, "/feeds/world.xml", {"If-Modified-Since": formatdate(mtime - 10, usegmt=True)}
        )[0]
        == 200
    )
    # If-None-Match wins over If-Modified-Since (RFC 9110).
    both = {"If-None-Match": '"stale"', "If-Modified-Since": formatdate(mtime + 10, usegmt=True)}
    assert request(site, "/feeds/world.xml", both)[0] == 200


@pytest.mark.parametrize(
    ("accept_encoding", "gzipped"),
    [("gzip, deflate", True), ("br, gzip;q=0.5", True), ("gzip;q=0", False), ("identity", False)],
)
def test_gzip_when_accepted(site: SampleSite, accept_encoding: str, gzipped: bool) -> None:
    status, headers, body = request(site, "/feeds/world.xml", {"Accept-Encoding": accept_encoding})
    assert status == 200
    assert headers.get("content-encoding") == ("gzip" if gzipped else None)
    assert (gzip.decompress(body) if gzipped else body) == FEED_BODY


def test_gzip_and_identity_have_distinct_etags_and_both_revalidate(site: SampleSite) -> None:
    _, plain, _ = request(site, "/feeds/world.xml", {"Accept-Encoding": "identity"})
    _, zipped, _ = request(site, "/feeds/world.xml", {"Accept-Encoding": "gzip"})
    assert plain["etag"] != zipped["etag"]
    conditional = {"Accept-Encoding": "gzip", "If-None-Match": zipped["etag"]}
    assert request(site, "/feeds/world.xml", conditional)[0] == 304


def test_head_sends_headers_only(site: SampleSite) -> None:
    status, headers, body = request(site, "/feeds/world.xml", method="HEAD")
    assert (status, body) == (200, b"")
    assert headers["content-length"] == str(len(FEED_BODY))


@pytest.mark.parametrize(
    "path",
    [
        "/missing.xml",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/feeds/../../secret.txt",
        "/..%2fsecret.txt",
    ],
)
def test_404_and_never_outside_root(site: SampleSite, path: str) -> None:
    status, _, body = request(site, path)
    assert status == 404
    assert b"outside" not in body


def test_placeholder_replaced_and_etag_follows_the_served_bytes(site: SampleSite) -> None:
    site.set_file("/p.xml", b"<link>{{BASE_URL}}/a.html</link>", "application/rss+xml")
    _, headers, body = request(site, "/p.xml")
    assert body == f"<link>{site.base_url}/a.html</link>".encode()
    with SampleSite() as other:
        other.set_file("/p.xml", b"<link>{{BASE_URL}}/a.html</link>", "application/rss+xml")
        assert request(other, "/p.xml")[1]["etag"] != headers["etag"]


def test_set_file_overrides_and_changes_etag(site: SampleSite) -> None:
    _, before, _ = request(site, "/feeds/world.xml")
    site.set_file("/feeds/world.xml", b"<rss/>", "application/rss+xml")
    status, after, body = request(site, "/feeds/world.xml", {"If-None-Match": before["etag"]})
    assert (status, body) == (200, b"<rss/>")
    assert after["etag"] != before["etag"]


def test_routes_and_request_log(site: SampleSite) -> None:
    def teapot(req: Request) -> Response:
        return Response(418, {"X-Query": req.query}, b"short and stout")

    site.route("/feeds/world.xml", teapot)
    status, headers, body = request(site, "/feeds/world.xml?x=1", {"X-Test": "yes"})
    assert (status, headers["x-query"], body) == (418, "x=1", b"short and stout")
    logged = site.requests[-1]
    assert (logged.method, logged.path, logged.query) == ("GET", "/feeds/world.xml", "x=1")
    assert logged.headers["x-test"] == "yes"
    site.clear_requests()
    assert site.requests == []


def test_failing_handler_is_a_500_not_a_crash(site: SampleSite) -> None:
    def broken(req: Request) -> Response:
        raise RuntimeError("boom")

    site.route("/broken", broken)
    assert request(site, "/broken")[0] == 500
    assert request(site, "/feeds/world.xml")[0] == 200


def test_stop_ends_a_hanging_request_promptly(root: Path) -> None:
    site = SampleSite(root)
    site.start()
    site.route("/hang", lambda req: Response(200, {}, b"late", delay=30))
    outcome: list[object] = []

    def client() -> None:
        try:
            outcome.append(request(site, "/hang"))
        except (OSError, http.client.HTTPException) as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    while not site.requests:
        time.sleep(0.01)
    started = time.monotonic()
    site.stop()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2
    assert outcome and not isinstance(outcome[0], tuple)


def test_base_url_needs_a_started_site() -> None:
    site = SampleSite()
    with pytest.raises(RuntimeError):
        _ = site.base_url
    with site:
        assert site.base_url.startswith("http://127.0.0.1:")
        assert site.url("feed.xml") == site.base_url + "/feed.xml"


def wait_until_idle(site: SampleSite) -> None:
    deadline = time.monotonic() + 5
    while site.in_flight and time.monotonic() < deadline:
        time.sleep(0.01)
    assert site.in_flight == 0


def test_counts_by_status_and_path_and_the_peak_in_flight(site: SampleSite) -> None:
    arrived: list[Request] = []
    lock = threading.Lock()
    all_in = threading.Event()

    def slow(req: Request) -> Response:
        # Hold each request until all three are being answered at once, whatever the load.
        with lock:
            arrived.append(req)
            if len(arrived) == 3:
                all_in.set()
        all_in.wait(timeout=5)
        return Response(200, {}, b"x")

    site.route("/slow", slow)
    first = request(site, "/feeds/world.xml")
    etag = first[1]["etag"]
    request(site, "/feeds/world.xml", {"If-None-Match": etag})
    request(site, "/missing")
    wait_until_idle(site)  # so no earlier request still counts while the three slow ones run
    threads = [threading.Thread(target=request, args=(site, "/slow")) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    wait_until_idle(site)  # the site counts a response once it has finished with the request
    assert site.status_counts == {200: 4, 304: 1, 404: 1}
    assert site.path_counts == {"/feeds/world.xml": 2, "/missing": 1, "/slow": 3}
    assert site.peak_in_flight == 3
    site.keep_request_log(False)
    request(site, "/missing")
    wait_until_idle(site)  # else the site may still be finishing that response when cleared
    assert len(site.requests) == 6 and site.path_counts["/missing"] == 2
    site.clear_requests()
    assert (site.status_counts, site.path_counts, site.peak_in_flight) == ({}, {}, 0)


def test_latency_delays_every_answer_and_overlaps_across_connections() -> None:
    """A site `latency` away answers each request that much later, files and 304s alike, and
    concurrent requests wait side by side (as across the internet), not one after another."""
    with SampleSite(latency=0.3) as slow:
        slow.set_file("/feed.xml", b"<rss/>", "application/rss+xml")
        started = time.monotonic()
        first = httpx.get(slow.url("/feed.xml"), timeout=5)
        assert time.monotonic() - started >= 0.3
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            answers = list(
                pool.map(
                    lambda _: httpx.get(
                        slow.url("/feed.xml"),
                        headers={"If-None-Match": first.headers["etag"]},
                        timeout=5,
                    ),
                    range(4),
                )
            )
        elapsed = time.monotonic() - started
    assert [answer.status_code for answer in answers] == [304] * 4
    assert 0.3 <= elapsed < 1.0  # four at once: one latency, not four
