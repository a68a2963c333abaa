"""The connection step of the HTTP client, with the address policy applied to the address that is
actually connected to.

Checking a URL's host before a request (feeds.fetch does, hop by hop) is not enough on its own:
between that check and the connection the name can be resolved again, and a hostile DNS server
can answer a public address the first time and 127.0.0.1 the second ("DNS rebinding"). So the
fetcher's connections go through `GuardedBackend`: it resolves the name once, refuses it if any
address is not allowed (feeds.netguard), and connects to one of exactly those addresses. TLS
still verifies the certificate against the host *name* (httpcore passes the name as SNI and for
verification, whatever address the socket was opened to).

The policy in force comes from a context variable that `guarding()` sets around one fetch: the
connection pool is shared by every source, while the policy is per source. With no policy set
(the CLI's one-off requests, tests of the fetcher) connections are made by name, as before.

httpx has no public switch for the network backend of its default transport, so
`guard_connections` sets the one attribute of the transport's httpcore pool that holds it;
tests/test_ssrf.py fails loudly if a new httpx or httpcore moves it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Iterator

import httpcore
import httpx

from feeds.netguard import AddressPolicy, allowed_addresses

__all__ = ["GuardedBackend", "guard_connections", "guarding"]

_POLICY: contextvars.ContextVar[AddressPolicy | None] = contextvars.ContextVar(
    "wirewatch_address_policy", default=None
)


@contextlib.contextmanager
def guarding(policy: AddressPolicy | None) -> Iterator[None]:
    """Connections opened inside this block (in this task) obey `policy` (None: no guard)."""
    token = _POLICY.set(policy)
    try:
        yield
    finally:
        _POLICY.reset(token)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the current policy allows."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        policy = _POLICY.get()
        addresses = [] if policy is None else await allowed_addresses(host, port, policy)
        if not addresses:  # no policy, or a trusted host: connect by name as usual
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def guard_connections(transport: httpx.AsyncHTTPTransport) -> httpx.AsyncHTTPTransport:
    """Route `transport`'s connections through a GuardedBackend; returns the transport."""
    pool = transport._pool  # private: see the module docstring
    pool._network_backend = GuardedBackend(pool._network_backend)
    return transport
