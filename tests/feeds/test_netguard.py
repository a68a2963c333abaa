"""The address policy as tables: how hosts are read, which addresses are public, and which hosts
a policy lets through. No sockets: resolvers are dictionaries."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest

from feeds.netguard import (
    AddressPolicy,
    BlockedAddress,
    allowed_addresses,
    check_url,
    host_of,
    ip_literal,
    refusal,
)


@pytest.mark.parametrize(
    ("host", "address"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),  # the root's trailing dot
        ("2130706433", "127.0.0.1"),  # one 32-bit decimal number
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.1", "127.0.0.1"),  # hex, and a.b with b filling 24 bits
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("10.1", "10.0.0.1"),
        ("169.254.43518", "169.254.169.254"),  # a.b.c with c filling 16 bits
        ("0", "0.0.0.0"),
        ("0x", "0.0.0.0"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("fe80::1%25eth0", "fe80::1"),  # a zone, percent-encoded as in a URL
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
        ("8.8.8.8", "8.8.8.8"),
    ],
)
def test_address_spellings_are_read_as_a_resolver_would(host: str, address: str) -> None:
    assert ip_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize(
    "host",
    ["example.org", "localhost", "08.0.0.1", "1.2.3.4.5", "256.1.1.1", "4294967296", "0x1g", ""],
)
def test_names_and_impossible_numbers_are_not_addresses(host: str) -> None:
    assert ip_literal(host) is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("169.254.169.254", "link-local"),  # cloud metadata services
        ("fe80::1", "link-local"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("192.0.2.1", "private"),  # documentation ranges count as private in ipaddress
        ("2001:db8::1", "private"),
        ("0.1.2.3", "private"),  # "this network"
        ("240.0.0.1", "private"),
        ("255.255.255.255", "private"),
        ("100.64.0.1", "non-public"),  # carrier-grade NAT, shared address space
        ("fec0::1", "site-local"),
        ("::127.0.0.1", "reserved"),  # the deprecated IPv4-compatible form
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged by the IPv4 address
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::1", "loopback"),  # 6to4 carrying 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 carrying 10.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 carrying 169.254.169.254
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo, client 127.0.0.1
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("2606:4700:4700::1111", None),
        ("::ffff:8.8.8.8", None),
    ],
)
def test_which_addresses_are_public(address: str, reason: str | None) -> None:
    assert refusal(ipaddress.ip_address(address)) == reason


class FakeResolver:
    """A resolver answering from a table, remembering what it was asked."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"unknown host {host}")
        return self.table[host]


TABLE = {
    "news.example": ["93.184.216.34", "2606:2800:220:1::1"],
    "intranet.example": ["10.1.2.3"],
    "split.example": ["93.184.216.34", "127.0.0.1"],  # one bad address is enough to refuse
    "odd.example": ["not-an-address"],
    "empty.example": [],
}


async def test_a_public_name_gives_its_addresses() -> None:
    policy = AddressPolicy(resolver=FakeResolver(TABLE))
    found = await allowed_addresses("News.Example.", 443, policy)
    assert [str(a) for a in found] == ["93.184.216.34", "2606:2800:220:1::1"]


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("intranet.example", "intranet.example resolves to 10.1.2.3, a private address"),
        ("split.example", "split.example resolves to 127.0.0.1, a loopback address"),
        ("2130706433", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("[::ffff:169.254.169.254]", "a link-local address"),
    ],
)
async def test_names_and_addresses_that_reach_inside_are_refused(host: str, message: str) -> None:
    with pytest.raises(BlockedAddress) as caught:
        await allowed_addresses(host, 80, AddressPolicy(resolver=FakeResolver(TABLE)))
    assert message in str(caught.value)
    assert "fetch.allow_private_addresses" in str(caught.value)


@pytest.mark.parametrize("host", ["unknown.example", "odd.example", "empty.example"])
async def test_a_name_without_usable_addresses_is_an_os_error(host: str) -> None:
    with pytest.raises(OSError):
        await allowed_addresses(host, 80, AddressPolicy(resolver=FakeResolver(TABLE)))


async def test_literals_are_not_sent_to_the_resolver() -> None:
    resolve = FakeResolver(TABLE)
    with pytest.raises(BlockedAddress):
        await allowed_addresses("0x7f.1", 80, AddressPolicy(resolver=resolve))
    assert resolve.asked == []


async def test_trusted_hosts_and_allow_private_let_anything_through() -> None:
    resolve = FakeResolver(TABLE)
    trusted = AddressPolicy(trusted_hosts=frozenset({"intranet.example"}), resolver=resolve)
    assert await allowed_addresses("INTRANET.example", 80, trusted) == []
    assert await allowed_addresses("127.0.0.1", 80, AddressPolicy(allow_private=True)) == []
    assert resolve.asked == []
    with pytest.raises(BlockedAddress):
        await allowed_addresses("split.example", 80, trusted)


@pytest.mark.parametrize(
    ("source_url", "from_chat", "trusted"),
    [
        ("http://127.0.0.1:8080/feed.xml", False, {"127.0.0.1"}),
        ("https://Intranet.Example./rss", False, {"intranet.example"}),
        ("http://[::1]:8080/", False, {"::1"}),
        ("http://127.0.0.1:8080/feed.xml", True, set()),
    ],
)
def test_a_source_trusts_its_own_host_unless_it_came_from_chat(
    source_url: str, from_chat: bool, trusted: set[str]
) -> None:
    policy = AddressPolicy.for_source(source_url, added_from_chat=from_chat)
    assert policy.trusted_hosts == trusted
    assert not policy.allow_private


async def test_check_url_names_the_url_refused() -> None:
    policy = AddressPolicy.for_source("http://intranet.example/feed", resolver=FakeResolver(TABLE))
    await check_url("http://intranet.example:8080/a/page", policy)  # same host, other port
    with pytest.raises(BlockedAddress) as caught:
        await check_url("http://169.254.169.254/latest/meta-data/", policy)
    assert caught.value.url == "http://169.254.169.254/latest/meta-data/"
    assert caught.value.reason == "link-local"


def test_host_of() -> None:
    assert host_of("HTTP://User@Example.ORG.:81/x") == "example.org"
    assert host_of("http://[::1]/") == "::1"
    assert host_of("not a url") == ""
    assert host_of("http://[::1/") == ""  # an unclosed bracket: not a URL at all
