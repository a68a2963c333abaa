"""One resend of a GET that met a kept-alive connection the server had just closed.

A server closes a kept-alive connection once it has been idle too long (its keep-alive timeout).
httpcore drops an idle connection whose close has already arrived before it reuses it, but the
close can cross our next request on the wire: the request then fails with "Server disconnected
without sending a response" (the server's FIN) or a `ReadError` (its reset), although the server
never handled it and would have answered it on a new connection. Browsers, Go's net/http and
urllib3 send an idempotent request again in that case. httpx does not: its
`AsyncHTTPTransport(retries=n)` is httpcore's, which retries only the *establishing* of a
connection (`ConnectError`, `ConnectTimeout`: httpcore/_async/connection.py), never a failure
on a connection already in use. So this one rule is written here, kept narrow:

- only when the connection was reused: httpcore reports, through httpx's documented `trace`
  request extension, that the request was sent without connecting first. A fresh connection
  that fails is a server that really failed, and asking it again would only add load;
- only a transport failure before the response head (status line and headers) arrived whole:
  `RemoteProtocolError` "Server disconnected without sending a response", `ReadError`,
  `WriteError`. Never a timeout (a slow server is not a closed connection, and asking again
  would double the wait), never another protocol error (the server did answer, badly), never
  once the head has arrived (`client.send` has returned by then; a body cut short stays the
  caller's error);
- once per `StaleConnectionResend`, which a fetch creates for itself: the resend is never resent,
  whatever it meets, and a redirect chain gets one resend in all.

The resend goes back through the client's pool, which has already discarded the failed
connection and checks any other idle one for a close that has arrived, so it normally goes out on
a new connection. It is part of the same request for the caller: it runs inside the caller's
politeness slot and total deadline (feeds.fetch), not in a slot or a deadline of its own. On the
wire it is a second request, so it waits for its host's delay like any other (`on_send`): the
first one may have reached the server before the connection closed.
"""

from __future__ import annotations

from typing import Any, Protocol

import httpx

__all__ = ["StaleConnectionResend"]

_NO_RESPONSE = "Server disconnected without sending a response"
"""httpcore's message when the connection closed before a response head came (h11 state
SEND_RESPONSE); tests/feeds/test_fetch_retry.py fails if a new httpcore words it otherwise."""


class OnSend(Protocol):
    """Told about each request that goes on the wire (feeds.politeness.RequestGate has both)."""

    async def sending(self, url: str) -> None:
        """Awaited before the request is handed to the client; it waits until this returns."""
        ...

    def sent(self, url: str) -> None:
        """Called once its head has been written (or, if it never was, once it failed)."""
        ...


_SENDING = frozenset({"http11.send_request_headers.started", "http2.send_request_headers.started"})
_SENT = frozenset({"http11.send_request_headers.complete", "http2.send_request_headers.complete"})


class _ConnectionTrace:
    """Records what httpcore says it did for one attempt (httpx's `trace` extension; an async
    client's httpcore requires the callback to be a coroutine function), and tells `on_send`
    the moment the request's head has been written."""

    def __init__(self, url: str, on_send: OnSend | None) -> None:
        self.url = url
        self.on_send = on_send
        self.connected = False
        self.sent = False
        self.written = False

    async def __call__(self, event: str, info: dict[str, Any]) -> None:
        if event in ("connection.connect_tcp.started", "connection.connect_unix_socket.started"):
            self.connected = True
        elif event in _SENDING:
            self.sent = True
        elif event in _SENT:
            self.settle()

    def settle(self) -> None:
        """Tell `on_send` once: when the head was written, else when the attempt ended."""
        if not self.written:
            self.written = True
            if self.on_send is not None:
                self.on_send.sent(self.url)

    @property
    def reused(self) -> bool:
        """Sent on a connection that was already open. False when httpcore said nothing (a
        transport that is not httpcore's): without that evidence there is no resend."""
        return self.sent and not self.connected


def _closed_early(error: httpx.HTTPError) -> bool:
    """A read or write failure, or the one protocol error that means the connection closed
    before a response head (any other is a server that answered, badly)."""
    if isinstance(error, httpx.RemoteProtocolError):
        return str(error).startswith(_NO_RESPONSE)
    return isinstance(error, (httpx.ReadError, httpx.WriteError))


class StaleConnectionResend:
    """Sends one fetch's requests (`send`), resending at most one of them, as the module says."""

    def __init__(self, client: httpx.AsyncClient, on_send: OnSend | None = None) -> None:
        self._client = client
        self._on_send = on_send
        self.resent = False
        """Whether the one resend has been used (by this fetch)."""

    async def send(self, request: httpx.Request) -> httpx.Response:
        """`client.send(request, stream=True)` without following redirects, resent once if it
        failed on a reused connection before any response head."""
        trace = _ConnectionTrace(str(request.url), self._on_send)
        try:
            return await self._attempt(request, trace)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as error:
            idempotent = request.method in ("GET", "HEAD")
            if self.resent or not idempotent or not trace.reused or not _closed_early(error):
                raise
        self.resent = True
        # The resend is another request on the wire: it waits for its moment too.
        return await self._attempt(request, _ConnectionTrace(str(request.url), self._on_send))

    async def _attempt(self, request: httpx.Request, trace: _ConnectionTrace) -> httpx.Response:
        """One request on the wire. It waits for its host's moment *before* the client picks a
        connection: waiting on a kept-alive connection already picked would give the server
        time to close it under us."""
        request.extensions = {**request.extensions, "trace": trace}
        if self._on_send is not None:
            await self._on_send.sending(trace.url)
        try:
            return await self._client.send(request, stream=True, follow_redirects=False)
        finally:
            trace.settle()
