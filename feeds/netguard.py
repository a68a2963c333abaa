"""Which addresses a fetch may reach: the guard against server-side request forgery (SSRF).

A URL the administrator wrote in the YAML is trusted: a source on an intranet host is a choice.
Every other URL (a source added from chat, where a redirect leads, an article link found in a
feed) must resolve only to public addresses, so that nobody who can post in a chat or publish a
feed can make the bot GET http://169.254.169.254/ (cloud metadata), http://127.0.0.1:6379/ or a
router's admin page. The rule, per fetch:

- ``allow_private`` (``fetch.allow_private_addresses``) turns the guard off;
- a host in ``trusted_hosts`` may be anything: for a source from the YAML that is the host of its
  configured URL, so its redirects and article links on that same host still work;
- any other host is refused if it is, or resolves to, a loopback, private, link-local, multicast,
  reserved, unspecified or otherwise non-global address. *All* the addresses a name resolves to
  must be public: a name with one public and one private address is refused.

Addresses are read the way a browser reads them (and the C library's resolver, which is what
would really connect): ``2130706433``, ``0x7f.1`` and ``0177.0.0.1`` are 127.0.0.1, and an IPv6
address carrying an IPv4 one (``::ffff:127.0.0.1``, 6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``)
is judged by the IPv4 address it carries. The decision uses the standard library's
``ipaddress`` tables; the numeric IPv4 forms are parsed here because ``ipaddress`` accepts only
dotted quads, and the platform's ``inet_aton`` differs between systems.

Pure: no I/O but the resolver, which is a parameter (tests pass a table; the default asks the
system through the event loop). The connection step that enforces the same rule on the address
actually connected to (DNS rebinding) is feeds.connector.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = [
    "AddressPolicy",
    "BlockedAddress",
    "IPAddress",
    "Resolver",
    "allowed_addresses",
    "check_url",
    "host_of",
    "ip_literal",
    "refusal",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
"""(host, port) → the addresses to connect to, as text; raises OSError when the name is unknown."""


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's answer (getaddrinfo, in the loop's thread pool: it blocks)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class BlockedAddress(Exception):
    """A host that the policy does not let this fetch reach."""

    def __init__(self, host: str, address: str, reason: str) -> None:
        self.host = host
        self.address = address
        self.reason = reason
        self.url: str | None = None
        """The URL refused, when the check was of a URL (feeds.fetch names redirect hops)."""
        where = f"{host} is" if host == address else f"{host} resolves to {address},"
        article = "an" if reason[0] in "aeiou" else "a"
        super().__init__(
            f"{where} {article} {reason} address: refused "
            "(fetch.allow_private_addresses is off, and the host is not a configured source's)"
        )


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """What one fetch may reach. The default refuses every non-public address."""

    allow_private: bool = False
    trusted_hosts: frozenset[str] = frozenset()
    """Lower-case host names (or address literals) that may resolve to anything."""
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def for_source(
        cls,
        url: str,
        *,
        added_from_chat: bool = False,
        allow_private: bool = False,
        resolver: Resolver = system_resolver,
    ) -> AddressPolicy:
        """The policy for everything a source fetches: its own configured host is trusted,
        unless the source came from chat (then nothing is)."""
        trusted = frozenset() if added_from_chat else frozenset({host_of(url)}) - {""}
        return cls(allow_private, trusted, resolver)

    def trusts(self, host: str) -> bool:
        return self.allow_private or _normal(host) in self.trusted_hosts


def host_of(url: str) -> str:
    """The URL's host as the policy compares it: lower case, no brackets, no trailing dot."""
    try:
        return _normal(urlsplit(url).hostname or "")
    except ValueError:
        return ""


def _normal(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


def ip_literal(host: str) -> IPAddress | None:
    """The address `host` spells, in any form a resolver would read as one; None for a name."""
    text = host.strip("[]")
    text = text.split("%", 1)[0]  # an IPv6 zone ("fe80::1%eth0", percent-encoded in URLs)
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    parts = text.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()  # "127.0.0.1." is the same host
    if not 1 <= len(parts) <= 4 or not all(_IPV4_PART.fullmatch(part) for part in parts):
        return None
    numbers = [_ipv4_number(part) for part in parts]
    # a.b.c.d, a.b.c (c is 16 bits), a.b (b is 24 bits), a (32 bits): the last part fills the rest
    if any(number > 255 for number in numbers[:-1]) or numbers[-1] >= 256 ** (5 - len(numbers)):
        return None
    value = numbers[-1] + sum(n << (8 * (3 - i)) for i, n in enumerate(numbers[:-1]))
    return ipaddress.IPv4Address(value)


def _ipv4_number(part: str) -> int:
    if part[:2].lower() == "0x":
        return int(part[2:] or "0", 16)
    if len(part) > 1 and part[0] == "0":
        return int(part, 8)
    return int(part)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def refusal(address: IPAddress) -> str | None:
    """Why `address` is not a public one ("loopback", "private"...), or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        carried = address.ipv4_mapped or address.sixtofour
        if carried is None and address in _NAT64:
            carried = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if carried is None and address.teredo is not None:
            carried = address.teredo[1]  # the client's address, which the relay would reach
        if carried is not None:
            return refusal(carried)
        if address.is_site_local:
            return "site-local"
    checks = (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("non-public", not address.is_global),
    )
    return next((reason for reason, applies in checks if applies), None)


async def allowed_addresses(host: str, port: int, policy: AddressPolicy) -> list[IPAddress]:
    """The addresses `host` may be reached at under `policy`, in the resolver's order.

    Raises BlockedAddress when any of them is refused, OSError when the name does not resolve.
    A trusted host is not resolved here at all (an empty list: connect by name as usual).
    """
    if policy.trusts(host):
        return []
    literal = ip_literal(host)
    if literal is not None:
        reason = refusal(literal)
        if reason is not None:
            # An address written the usual way is named as written; "0x7f.1" is shown as the
            # address it spells.
            usual = _normal(host).split("%", 1)[0]
            shown = usual if _is_usual_address(usual) else str(literal)
            raise BlockedAddress(_normal(host), shown, reason)
        return [literal]
    addresses: list[IPAddress] = []
    for text in await policy.resolver(_normal(host), port):
        address = ip_literal(text)
        if address is None:
            raise OSError(f"the resolver gave {text!r} for {host}, which is not an address")
        reason = refusal(address)
        if reason is not None:
            raise BlockedAddress(_normal(host), str(address), reason)
        addresses.append(address)
    if not addresses:
        raise OSError(f"{host} has no address")
    return addresses


def _is_usual_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def check_url(url: str, policy: AddressPolicy) -> None:
    """Raise BlockedAddress if `url`'s host may not be reached (OSError: it does not resolve)."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:  # a malformed port: the fetch itself refuses the URL
        port = 80
    try:
        await allowed_addresses(parts.hostname or "", port, policy)
    except BlockedAddress as error:
        error.url = url
        raise
