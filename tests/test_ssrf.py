"""The SSRF guard across real sockets on 127.0.0.1: a source added from chat, a redirect, an
article link and a rebinding name must not reach the machine's own network, while the admin's own
loopback sources (the whole rest of the suite) keep working. Names are resolved by table
(tests.feeds.test_netguard.FakeResolver): nothing here asks a real DNS server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpcore
import pytest

from bot.commands import REFUSAL, ChatCommands
from bot.ingest import Ingestor, SourceJob
from bot.polling import job_for
from bot.sample_site import Response, SampleSite
from bot.settings import Settings, load_settings
from bot.source_commands import add_source_text
from bot.store import Store
from feeds.connector import GuardedBackend, guarding
from feeds.errors import FetchError, FetchErrorKind
from feeds.fetch import FetchLimits, fetch, make_client
from feeds.match import Matcher
from feeds.models import FetchResult, Watchlist
from feeds.netguard import AddressPolicy
from feeds.robots import RobotsCache
from tests.feeds.test_netguard import FakeResolver
from tests.support.fake_telegram import FakeTelegram

LIMITS = FetchLimits(connect_timeout=2, read_timeout=2, total_timeout=5)
FEED = (
    b'<?xml version="1.0"?><rss version="2.0"><channel><title>Wire</title>'
    b"<item><guid>g1</guid><title>Kyiv talks</title><link>{{BASE_URL}}/a1</link>"
    b"<description>A teaser about Kyiv.</description></item></channel></rss>"
)
HOME = (
    b'<html><head><link rel="alternate" type="application/rss+xml" title="Wire" '
    b'href="/feed.xml"></head><body>Home</body></html>'
)
NAMES = {"localhost": ["127.0.0.1"], "intranet.test": ["10.0.0.7"]}


@pytest.fixture
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        running.set_file("/feed.xml", FEED, "application/rss+xml")
        running.set_file("/", HOME, "text/html")
        yield running


def port(site: SampleSite) -> int:
    return urlsplit(site.base_url).port or 80


def redirect(to: str) -> Response:
    return Response(302, {"Location": to}, b"")


async def blocked(url: str, policy: AddressPolicy) -> FetchError:
    async with make_client("wirewatch-test", LIMITS) as client:
        with pytest.raises(FetchError) as caught:
            await fetch(client, url, limits=LIMITS, policy=policy)
    assert caught.value.kind is FetchErrorKind.BLOCKED
    return caught.value


async def test_a_chat_source_on_loopback_is_refused_before_any_request(site: SampleSite) -> None:
    policy = AddressPolicy.for_source(site.url("/feed.xml"), added_from_chat=True)
    error = await blocked(site.url("/feed.xml"), policy)
    assert "127.0.0.1 is a loopback address: refused" in str(error)
    assert site.requests == []


async def test_the_admins_loopback_source_and_its_same_host_redirects_work(
    site: SampleSite,
) -> None:
    site.route("/old", lambda request: redirect(site.url("/feed.xml")))
    policy = AddressPolicy.for_source(site.url("/old"), resolver=FakeResolver({}))
    async with make_client("wirewatch-test", LIMITS) as client:
        result = await fetch(client, site.url("/old"), limits=LIMITS, policy=policy)
    assert isinstance(result, FetchResult) and result.url == site.url("/feed.xml")


@pytest.mark.parametrize(
    ("host", "said"),
    [
        ("localhost", "localhost resolves to 127.0.0.1, a loopback address"),
        ("2130706433", "2130706433 resolves to 127.0.0.1, a loopback address"),
        ("0x7f.0.0.1", "0x7f.0.0.1 resolves to 127.0.0.1, a loopback address"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is a loopback address"),
        ("intranet.test", "intranet.test resolves to 10.0.0.7, a private address"),
    ],
)
async def test_a_redirect_off_the_sources_host_to_an_inside_address_is_refused(
    site: SampleSite, host: str, said: str
) -> None:
    target = f"http://{host}:{port(site)}/feed.xml"
    site.route("/old", lambda request: redirect(target))
    policy = AddressPolicy.for_source(site.url("/old"), resolver=FakeResolver(NAMES))
    error = await blocked(site.url("/old"), policy)
    assert str(error).startswith(f"blocked: redirect to {target}: {said}: refused")
    assert error.url == site.url("/old")
    assert [request.path for request in site.requests] == ["/old"]


async def test_allow_private_addresses_lets_the_same_redirect_through(site: SampleSite) -> None:
    site.route("/old", lambda request: redirect(f"http://127.1:{port(site)}/feed.xml"))
    policy = AddressPolicy.for_source(site.url("/old"), added_from_chat=True, allow_private=True)
    async with make_client("wirewatch-test", LIMITS) as client:
        result = await fetch(client, site.url("/old"), limits=LIMITS, policy=policy)
    assert isinstance(result, FetchResult)


class Rebinding:
    """A hostile name server: a public address for the check, loopback for the connection."""

    def __init__(self) -> None:
        self.answers = [["93.184.216.34"], ["127.0.0.1"]]

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


async def test_dns_rebinding_is_caught_at_connection_time(site: SampleSite) -> None:
    """The name passes the check before the request, then resolves to 127.0.0.1 when the
    connection is opened: the connection step refuses it (and nothing reaches the site)."""
    url = f"http://rebind.test:{port(site)}/feed.xml"
    error = await blocked(url, AddressPolicy(resolver=Rebinding()))
    assert "rebind.test resolves to 127.0.0.1, a loopback address" in str(error)
    assert site.requests == []


class RecordingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: object, **kwargs: object) -> object:  # type: ignore[override]
        self.hosts.append(host)
        raise httpcore.ConnectError("recorded, not connected")


@pytest.mark.parametrize(
    ("policy", "connected_to"),
    [
        (None, ["news.test"]),  # no guard: by name, as httpx always did
        (AddressPolicy(resolver=FakeResolver({"news.test": ["93.184.216.34", "8.8.8.8"]})),
         ["93.184.216.34", "8.8.8.8"]),  # the checked addresses, each tried in turn
        (AddressPolicy(trusted_hosts=frozenset({"news.test"})), ["news.test"]),
    ],
)  # fmt: skip
async def test_the_guarded_backend_connects_to_the_addresses_it_checked(
    policy: AddressPolicy | None, connected_to: list[str]
) -> None:
    inner = RecordingBackend()
    with guarding(policy), pytest.raises(httpcore.ConnectError):
        await GuardedBackend(inner).connect_tcp("news.test", 443)
    assert inner.hosts == connected_to


# ── polling: the policy follows the source into its article pages ────────────────────────────


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    with Store.open(store_url) as opened:
        yield opened


@pytest.fixture
async def ingestor(store: Store) -> AsyncIterator[Ingestor]:
    async with make_client("wirewatch-test", LIMITS) as client:
        yield Ingestor(
            store=store,
            client=client,
            matcher=Matcher([Watchlist("kyiv", keywords=("Kyiv",))]),
            routes={"kyiv": (5,)},
            limits=LIMITS,
            robots=RobotsCache(client, "wirewatch-test", limits=LIMITS),
        )


ARTICLE = (
    b"<html><body><article><h1>Kyiv talks</h1>"
    + b"<p>Paragraph of the talks in Kyiv, with enough words to count as text.</p>" * 6
    + b"</article></body></html>"
)


async def test_article_links_may_reach_inside_only_on_the_sources_own_host(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    items = [
        ("g1", f"{site.base_url}/a1"),  # the source's own host: fetched
        ("g2", "http://169.254.169.254/latest/meta-data/"),  # metadata service: refused
        ("g3", f"http://localhost:{port(site)}/a3"),  # another name for loopback: refused
    ]
    body = "".join(
        f"<item><guid>{guid}</guid><title>Kyiv {guid}</title><link>{link}</link>"
        "<description>A teaser about Kyiv.</description></item>"
        for guid, link in items
    )
    feed = (
        f'<?xml version="1.0"?><rss version="2.0"><channel><title>W</title>{body}</channel></rss>'
    )
    site.set_file("/feed.xml", feed.encode(), "application/rss+xml")
    site.set_file("/a1", ARTICLE, "text/html")
    site.set_file("/a3", ARTICLE, "text/html")
    policy = AddressPolicy.for_source(site.url("/feed.xml"), resolver=FakeResolver(NAMES))
    job = SourceJob("wire", site.url("/feed.xml"), full_text="always", policy=policy)
    report = await ingestor.poll(job)
    assert report.error is None and report.new_articles == 3
    assert sorted(r.path for r in site.requests) == ["/a1", "/feed.xml", "/robots.txt"]
    refused = [w for w in report.warnings if "blocked" in w]
    assert len(refused) == 2
    assert "169.254.169.254 is a link-local address" in refused[1]  # oldest entry first
    assert "localhost resolves to 127.0.0.1" in refused[0]
    texts = {item.article.url: item.article.text for item in store.feed_items("kyiv", 10)}
    assert texts["http://169.254.169.254/latest/meta-data/"] == "A teaser about Kyiv."


async def test_a_chat_source_on_loopback_fails_as_blocked(
    site: SampleSite, ingestor: Ingestor, store: Store
) -> None:
    policy = AddressPolicy.for_source(site.url("/feed.xml"), added_from_chat=True)
    report = await ingestor.poll(SourceJob("chat", site.url("/feed.xml"), policy=policy))
    assert report.error is not None and report.error.startswith("blocked: 127.0.0.1 is a loopback")
    assert store.source_state("chat", site.url("/feed.xml")).last_error == report.error
    assert site.requests == []


# ── /addsource ───────────────────────────────────────────────────────────────────────────────

CONFIG = """\
telegram:
  admins: [1]
fetch:
  allow_private_addresses: {allow}
  timeout: 5s
sources:
  - {{name: wire, url: "https://example.org/wire.xml"}}   # the admin's source
watchlists:
  - {{name: kyiv, keywords: [Kyiv], chats: [5]}}
"""


def settings_for(tmp_path: Path, allow: bool) -> Settings:
    path = tmp_path / "wirewatch.yaml"
    path.write_text(
        CONFIG.format(allow=str(allow).lower()) + f"database: sqlite:///{tmp_path / 'db'}\n",
        encoding="utf-8",
    )
    return load_settings(path, {})


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://intranet.test/", "intranet.test resolves to 10.0.0.7, a private address"),
        ("http://169.254.169.254/latest/", "169.254.169.254 is a link-local address"),
        ("http://[::1]:8080/", "::1 is a loopback address"),
        ("http://0/", "0 resolves to 0.0.0.0, an unspecified address"),
    ],
)
async def test_addsource_refuses_inside_addresses(tmp_path: Path, url: str, said: str) -> None:
    settings = settings_for(tmp_path, allow=False)
    before = settings.path.read_text("utf-8")
    reply = await add_source_text(settings, [url], FakeResolver(NAMES))
    assert reply.startswith(f"Nothing changed: {url}: {said}: refused")
    assert settings.path.read_text("utf-8") == before


async def test_addsource_with_private_addresses_allowed_adds_a_marked_source(
    tmp_path: Path, site: SampleSite
) -> None:
    settings = settings_for(tmp_path, allow=True)
    reply = await add_source_text(settings, [site.url("/"), "wire-two"])
    assert reply == (
        f"Added source wire-two: {site.url('/feed.xml')}. "
        "It is polled from the next restart (sources are read at start-up)."
    )
    text = settings.path.read_text("utf-8")
    assert "# the admin's source" in text and "added_from_chat: true" in text
    added = load_settings(settings.path, {}).sources[-1]
    assert (added.name, added.url, added.added_from_chat) == (
        "wire-two",
        site.url("/feed.xml"),
        True,
    )
    # Its polls trust no host: with private addresses allowed they work, without they are refused.
    assert job_for(added, allow_private=True).policy == AddressPolicy(allow_private=True)
    assert job_for(added).policy == AddressPolicy()
    again = await add_source_text(settings, [site.url("/feed.xml")])
    assert again == f"Nothing changed: {site.url('/feed.xml')} is already a source."


NOT_HTTP = "is not an http:// or https:// URL."


@pytest.mark.parametrize(
    ("words", "reply"),
    [
        ([], "Usage: /addsource URL [NAME] (a site's home page or a feed URL)"),
        (["a", "b", "c"], "Usage: /addsource URL [NAME] (a site's home page or a feed URL)"),
        (["ftp://example.org/"], f"Nothing changed: ftp://example.org/ {NOT_HTTP}"),
        (["example.org"], f"Nothing changed: example.org {NOT_HTTP}"),
    ],
)  # fmt: skip
async def test_addsource_usage(tmp_path: Path, words: list[str], reply: str) -> None:
    assert await add_source_text(settings_for(tmp_path, allow=False), words) == reply


async def wait_for_reply(api: FakeTelegram, chat: int, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(api.replies(chat)) < count:
        assert time.monotonic() < deadline, f"no reply in chat {chat}"
        await asyncio.sleep(0.05)
    return api.replies(chat)


async def test_addsource_in_chat_is_for_admins_and_refuses_loopback(
    tmp_path: Path, site: SampleSite
) -> None:
    settings = settings_for(tmp_path, allow=False)
    before = settings.path.read_text("utf-8")

    async def apply(changed: Settings) -> None:
        raise AssertionError("adding a source does not apply settings live")

    with FakeTelegram() as api, Store.open(settings.database) as store:
        commands = ChatCommands(
            api.token, api.base_url, settings=lambda: settings, store=store,
            clock=lambda: None, on_change=apply,  # type: ignore[arg-type,return-value]
        )  # fmt: skip
        assert await commands.start()
        try:
            api.send_command(f"/addsource {site.url('/')}", user_id=2, chat_id=7)
            [refused] = await wait_for_reply(api, 7, 1)
            assert refused == REFUSAL
            api.send_command(f"/addsource {site.url('/')}", user_id=1, chat_id=7)
            [_, blocked_reply] = await wait_for_reply(api, 7, 2)
            assert blocked_reply.startswith(
                f"Nothing changed: {site.url('/')}: 127.0.0.1 is a loopback address: refused"
            )
        finally:
            await commands.stop()
    assert settings.path.read_text("utf-8") == before
    assert site.requests == []
