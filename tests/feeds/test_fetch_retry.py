"""A GET that meets a kept-alive connection the server has just closed is sent once more, on a new
connection (feeds.resend), and nothing else is.

The server here is raw asyncio on 127.0.0.1 so that it can misbehave at the socket level. It
answers the first request of a connection with keep-alive (no `Connection: close`) and closes
the connection when the *next* request arrives on it, without answering: that is the moment a
server's keep-alive timeout crosses the client's next request. (A server that closes right after
its answer is no race: its FIN arrives while the connection is idle, and httpcore drops such a
connection before reusing it, as the last test shows.)
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from enum import Enum

import httpx
import pytest

from feeds.errors import FetchError, FetchErrorKind
from feeds.fetch import FetchLimits, fetch, make_client
from feeds.models import FetchResult, NotModified
from feeds.politeness import HostGate
from feeds.resend import StaleConnectionResend

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5)
BODY = b"<rss version='2.0'><channel><title>t</title></channel></rss>"


class Later(Enum):
    """What the server does with a request that is not the first it ever got."""

    ANSWER = "answer"
    CLOSE = "close"  # FIN: "Server disconnected without sending a response"
    RESET = "reset"  # RST: ReadError (connection reset by peer)
    HANG = "hang"  # never answer


@dataclass
class StaleServer:
    """`reuse`: what happens to a request arriving on a connection that already served one.
    `later`: what happens to any other request after the very first one (on a new connection).
    `close_after_answer`: close each connection right after its first answer."""

    reuse: Later = Later.CLOSE
    later: Later = Later.ANSWER
    close_after_answer: bool = False
    connections: int = 0
    requests: list[tuple[int, str]] = field(default_factory=list)
    """(connection number, request line) for every request head read."""
    port: int = 0
    probe: Callable[[], object] | None = None
    probes: list[object] = field(default_factory=list)
    """What `probe` returned as each request arrived."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/feed.xml"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        served = 0
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                self.requests.append((number, head.split(b"\r\n", 1)[0].decode()))
                if self.probe is not None:
                    self.probes.append(self.probe())
                if served == 0 and len(self.requests) == 1:
                    action = Later.ANSWER
                elif served:
                    action = self.reuse
                else:
                    action = self.later
                if action is Later.HANG:
                    await reader.read()  # until the client gives up and closes
                    return
                if action is Later.RESET:
                    linger = struct.pack("ii", 1, 0)
                    writer.get_extra_info("socket").setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, linger
                    )
                    writer.transport.abort()
                    return
                if action is Later.CLOSE:
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
                    + f"Content-Length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                await writer.drain()
                served += 1
                if self.close_after_answer:
                    return
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[StaleServer]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        async with server:
            yield self
            server.close()


class CountingGate:
    """A HostGate that counts the slots taken, and tells which one is held."""

    def __init__(self) -> None:
        self.inner = HostGate(min_delay=0)
        self.slots = 0
        self.held: int | None = None

    @asynccontextmanager
    async def slot(self, url: str) -> AsyncIterator[None]:
        self.slots += 1
        async with self.inner.slot(url):
            self.held = self.slots
            try:
                yield
            finally:
                self.held = None

    async def sending(self, url: str) -> None:
        await self.inner.sending(url)

    def sent(self, url: str) -> None:
        self.inner.sent(url)


async def two_fetches(
    server: StaleServer, gate: CountingGate | None = None
) -> tuple[FetchResult, FetchResult | NotModified | FetchError]:
    """A first fetch that leaves a kept-alive connection, then a second one over it."""
    async with make_client("wirewatch-test", LIMITS) as client:
        first = await fetch(client, server.url, limits=LIMITS, gate=gate)
        assert isinstance(first, FetchResult)
        try:
            return first, await fetch(client, server.url, limits=LIMITS, gate=gate)
        except FetchError as error:
            return first, error


@pytest.mark.parametrize("reuse", [Later.CLOSE, Later.RESET])
async def test_a_get_on_a_connection_the_server_closed_is_sent_again_on_a_new_one(
    reuse: Later,
) -> None:
    async with StaleServer(reuse=reuse).running() as server:
        _, second = await two_fetches(server)
    assert isinstance(second, FetchResult)
    assert second.content == BODY
    assert server.connections == 2  # exactly one extra connection
    # The second GET reached the server on the old connection (and was dropped), then once on
    # the new one.
    assert [number for number, _ in server.requests] == [1, 1, 2]


async def test_the_resend_failing_too_is_a_connection_error_after_exactly_two_attempts() -> None:
    async with StaleServer(reuse=Later.CLOSE, later=Later.CLOSE).running() as server:
        _, second = await two_fetches(server)
    assert isinstance(second, FetchError)
    assert second.kind is FetchErrorKind.CONNECTION
    assert "Server disconnected without sending a response" in second.message
    assert len(server.requests) - 1 == 2  # after the first fetch's one request
    assert server.connections == 2


async def test_a_failure_on_a_new_connection_is_not_sent_again() -> None:
    """A server that drops a request on a connection it has just accepted is not racing a
    keep-alive timeout: asking it again would only add load."""
    async with StaleServer(later=Later.CLOSE, close_after_answer=True).running() as server:
        _, second = await two_fetches(server)
    assert isinstance(second, FetchError)
    assert second.kind is FetchErrorKind.CONNECTION
    assert [number for number, _ in server.requests] == [1, 2]


async def test_a_timeout_is_not_sent_again() -> None:
    limits = FetchLimits(connect_timeout=2, read_timeout=0.3, total_timeout=5)
    async with (
        StaleServer(reuse=Later.HANG).running() as server,
        make_client("wirewatch-test", limits) as client,
    ):
        await fetch(client, server.url, limits=limits)
        with pytest.raises(FetchError) as caught:
            await fetch(client, server.url, limits=limits)
    assert caught.value.kind is FetchErrorKind.TIMEOUT
    assert len(server.requests) == 2  # the first fetch's and the timed-out one, nothing more
    assert server.connections == 1


async def test_the_total_deadline_covers_the_resend() -> None:
    """The resend meets a server that never answers: the fetch ends at its total deadline (read
    timeout longer), as a timeout, not sent a third time."""
    limits = FetchLimits(connect_timeout=2, read_timeout=5, total_timeout=0.5)
    async with (
        StaleServer(reuse=Later.CLOSE, later=Later.HANG).running() as server,
        make_client("wirewatch-test", limits) as client,
    ):
        await fetch(client, server.url, limits=limits)
        with pytest.raises(FetchError) as caught:
            await fetch(client, server.url, limits=limits)
    assert caught.value.kind is FetchErrorKind.TIMEOUT
    assert "0.5s" in caught.value.message  # the total deadline's message, not the read timeout's
    assert [number for number, _ in server.requests] == [1, 1, 2]


async def test_the_resend_takes_no_second_gate_slot() -> None:
    gate = CountingGate()
    async with StaleServer(reuse=Later.CLOSE, probe=lambda: gate.held).running() as server:
        _, second = await two_fetches(server, gate=gate)
    assert isinstance(second, FetchResult)
    assert gate.slots == 2  # one per fetch
    # The first fetch's request in slot 1; the second fetch's request and its resend both in 2.
    assert server.probes == [1, 2, 2]


async def test_a_server_close_that_arrived_while_idle_needs_no_resend() -> None:
    """httpcore drops an idle connection whose close has arrived (module docstring): no request
    is lost and none is resent."""
    async with (
        StaleServer(close_after_answer=True).running() as server,
        make_client("wirewatch-test", LIMITS) as client,
    ):
        await fetch(client, server.url, limits=LIMITS)
        await asyncio.sleep(0.05)  # the FIN reaches the client while the connection is idle
        sender = StaleConnectionResend(client)
        response = await sender.send(client.build_request("GET", server.url))
        await response.aclose()
    assert response.status_code == 200
    assert not sender.resent
    assert [number for number, _ in server.requests] == [1, 2]


async def test_no_resend_without_evidence_that_the_connection_was_reused() -> None:
    """A transport that is not httpcore's says nothing about connections: no resend."""
    calls = 0

    def drop(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(drop)) as client:
        with pytest.raises(FetchError) as caught:
            await fetch(client, "http://feeds.example/feed.xml", limits=LIMITS)
    assert caught.value.kind is FetchErrorKind.CONNECTION
    assert calls == 1
