"""The loopback site times a request's arrival by when its bytes reached the host, not by when a
handler thread got to them: bench/ingest runs hundreds of sites in one busy process, and a gap
measured at handler time there reports politeness violations the client never committed."""

from __future__ import annotations

import http.client
import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from typing import BinaryIO

import pytest

from bot import sample_site
from bot.arrival_clock import ArrivalReader, enable_timestamps
from bot.sample_site import Request, Response, SampleSite

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="kernel receive times need SO_TIMESTAMPNS"
)


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        running.set_file("/a", b"a", "text/plain")
        yield running


def connect(site: SampleSite) -> socket.socket:
    host, port = site.base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def get_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: sample\r\n\r\n".encode("ascii")


def read_response(stream: BinaryIO) -> tuple[int, bytes]:
    """One response from a kept-alive connection, leaving the next one in the stream."""
    status_line = stream.readline()
    headers = http.client.parse_headers(stream)
    length = int(headers.get("Content-Length", "0"))
    return int(status_line.split()[1]), stream.read(length)


@linux_only
def test_the_gap_is_the_kernel_arrival_gap_when_the_handler_is_slow_to_read(
    site: SampleSite,
) -> None:
    # Connection 1 asks for /slow, whose handler holds that connection's thread until released;
    # request A follows on the same connection 0.3 s later, so it sits unread in the kernel.
    # Request B arrives 0.3 s after A on connection 2 and is answered at once. Stamped when a
    # handler gets to it, A would come after B, a few milliseconds apart; by the kernel, the
    # three arrived 0.3 s apart.
    release = threading.Event()

    def slow(request: Request) -> Response:
        release.wait(5)
        return Response(200, {"Content-Type": "text/plain"}, b"slow")

    site.route("/slow", slow)
    first, second = connect(site), connect(site)
    with first, second, first.makefile("rb") as first_in, second.makefile("rb") as second_in:
        first.sendall(get_bytes("/slow"))
        deadline = time.monotonic() + 5
        while site.in_flight < 1 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert site.in_flight == 1
        time.sleep(0.3)
        first.sendall(get_bytes("/a"))
        time.sleep(0.3)
        second.sendall(get_bytes("/a"))
        assert read_response(second_in) == (200, b"a")
        release.set()
        assert read_response(first_in) == (200, b"slow")
        assert read_response(first_in) == (200, b"a")
    gap = site.min_start_gap
    assert gap is not None and 0.25 <= gap < 0.6, gap


def test_pipelined_requests_share_the_arrival_of_the_read_that_brought_them(
    site: SampleSite,
) -> None:
    # Two requests in one write arrive together; the second is parsed from the buffer without a
    # new read, and its arrival is that read's, not "unknown" or the time the thread got to it.
    with connect(site) as connection, connection.makefile("rb") as incoming:
        connection.sendall(get_bytes("/a") + get_bytes("/a"))
        assert read_response(incoming) == (200, b"a")
        assert read_response(incoming) == (200, b"a")
    gap = site.min_start_gap
    assert gap is not None and gap < 0.05, gap


def test_head_and_keep_alive_still_answer_through_the_timed_reader(site: SampleSite) -> None:
    with connect(site) as connection, connection.makefile("rb") as incoming:
        connection.sendall(b"HEAD /a HTTP/1.1\r\nHost: sample\r\n\r\n")
        status_line = incoming.readline()
        headers = http.client.parse_headers(incoming)
        assert status_line.split()[1] == b"200" and headers["Content-Length"] == "1"
        connection.sendall(get_bytes("/a"))  # the HEAD left no body behind on the connection
        assert read_response(incoming) == (200, b"a")


def test_an_idle_kept_alive_connection_is_still_closed_after_the_handler_timeout(
    site: SampleSite, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sample_site._Handler, "timeout", 0.2)
    with connect(site) as connection, connection.makefile("rb") as incoming:
        connection.sendall(get_bytes("/a"))
        assert read_response(incoming) == (200, b"a")
        started = time.monotonic()
        assert incoming.read() == b""  # the server hung up
        assert time.monotonic() - started < 2


def _connected_pair(*, timestamps: bool) -> tuple[socket.socket, socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        if timestamps:
            assert enable_timestamps(listener)
        client = socket.create_connection(listener.getsockname()[:2], timeout=5)
        server, _ = listener.accept()
    server.settimeout(5)
    return client, server


@linux_only
def test_the_reader_gives_the_kernel_receive_time_not_the_read_time() -> None:
    client, server = _connected_pair(timestamps=True)
    with client, server:
        arrivals = ArrivalReader(server)
        with io.BufferedReader(arrivals) as stream:
            sent = time.time()
            client.sendall(b"first\nsecond\n")
            time.sleep(0.3)
            assert stream.readline() == b"first\n"
            arrival = arrivals.arrival()
            assert arrival is not None and abs(arrival - sent) < 0.1
            arrivals.reset()
            assert stream.readline() == b"second\n"  # from the buffer: no new read
            assert arrivals.arrival() == arrival
            arrivals.reset()
            sent = time.time()
            client.sendall(b"third\n")
            time.sleep(0.3)
            assert stream.readline() == b"third\n"
            later = arrivals.arrival()
            assert later is not None and abs(later - sent) < 0.1


def test_without_kernel_timestamps_the_reader_falls_back_to_the_read_time() -> None:
    client, server = _connected_pair(timestamps=False)
    with client, server, io.BufferedReader(ArrivalReader(server)) as stream:
        arrivals = stream.raw
        assert isinstance(arrivals, ArrivalReader)
        assert arrivals.arrival() is None
        client.sendall(b"line\n")
        time.sleep(0.3)
        before = time.time()
        assert stream.readline() == b"line\n"
        arrival = arrivals.arrival()
        assert arrival is not None and before <= arrival <= time.time()
