"""A corpus of XSS payloads (tests/fixtures/xss/payloads.txt) through the real pipeline: put into
feed entries (RSS, JSON Feed) and article pages served on 127.0.0.1, fetched, parsed, cleaned,
matched and stored by the Ingestor, then published as Atom by the Publisher and rendered as
Telegram alerts and digests. Nothing that runs script may come out the other end.

What "dangerous" means here, checked on the HTML as a browser-like parser reads it (BeautifulSoup
with both lxml and Python's html.parser, which disagree on broken markup):

- no element that runs, embeds, restyles or redirects: script, style, iframe, frame, object,
  embed, applet, base, meta, link, form and its controls, svg, math, template...;
- no event handler attribute (on*), no style, srcdoc, formaction, srcset, background, poster;
- every href and src is an absolute http:, https: or mailto: URL (mailto: is kept in article
  text on purpose: it runs nothing).

Telegram messages may hold only the tags Telegram's HTML parse mode knows, links only to
http(s), and must be accepted by the fake Bot API's strict parser.
"""

from __future__ import annotations

import asyncio
import html
import json
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

import pytest
from bs4 import BeautifulSoup
from lxml import etree

from bot.digest import compose_digest, digest_items
from bot.ingest import Ingestor, SourceJob
from bot.publish import FeedSpec, Publisher, source_feed_spec
from bot.sample_site import SampleSite
from bot.server import FeedCatalog
from bot.store import PendingAlert, Store
from bot.telegram import format_alert
from feeds.atom import AtomEntry, FeedMeta, render_atom
from feeds.fetch import FetchLimits, make_client
from feeds.match import Matcher
from feeds.models import Watchlist
from tests.conftest import REPO
from tests.support.fake_telegram import parse_telegram_html

CORPUS = REPO / "tests" / "fixtures" / "xss" / "payloads.txt"
LIMITS = FetchLimits(connect_timeout=2, read_timeout=5, total_timeout=10)
ATOM = "{http://www.w3.org/2005/Atom}"

DANGEROUS_ELEMENTS = frozenset(
    {
        "script", "style", "iframe", "frame", "frameset", "object", "embed", "applet", "base",
        "meta", "link", "form", "input", "button", "select", "textarea", "keygen", "isindex",
        "svg", "math", "template", "noscript", "xmp", "body", "html", "head", "title", "video",
        "audio", "source", "marquee", "details", "table", "td",
    }
)  # fmt: skip
DANGEROUS_ATTRIBUTES = frozenset(
    {"style", "srcdoc", "formaction", "action", "srcset", "background", "poster", "ping", "form"}
)
URL_ATTRIBUTES = frozenset({"href", "src", "cite", "data", "xlink:href", "action", "formaction"})
SAFE_SCHEMES = ("http", "https", "mailto")
TELEGRAM_TAGS = frozenset(
    {
        "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "a",
        "code", "pre", "blockquote", "tg-emoji",
    }
)  # fmt: skip
BAD_LINKS = (
    "javascript:alert(1)",
    " JaVaScRiPt:alert(1)",
    "data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==",
    "vbscript:msgbox(1)",
    "java\tscript:alert(1)",
)


def filler(number: int) -> str:
    """A sentence of its own for each article: the same text everywhere would make one story of
    them all (near-duplicate detection) and one alert, and per-site template learning would take
    a sentence repeated on every page for boilerplate."""
    rng = random.Random(number)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(4, 9)))
        for _ in range(16)
    ]
    joined = " ".join(f"{word} {rng.choice(('and', 'of', 'the', 'in', 'for'))}" for word in words)
    return f"Kyiv {joined} {number}."


def load_corpus(path: Path = CORPUS) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [
        line.replace("\\n", "\n") for line in lines if line.strip() and not line.startswith("#")
    ]


PAYLOADS = load_corpus()


def scheme_of(url: str) -> str:
    """The scheme a browser would see: it drops ASCII whitespace and control characters first."""
    cleaned = re.sub(r"[\x00-\x20\x7f]", "", url)
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*):", cleaned)
    return match.group(1).lower() if match else ""


def html_dangers(fragment: str) -> list[str]:
    """What in an HTML fragment could run script or leave the page, as two parsers see it."""
    found: list[str] = []
    for parser in ("lxml", "html.parser"):
        soup = BeautifulSoup(fragment, parser)
        for element in soup.find_all(True):
            name = element.name.lower()
            if name in DANGEROUS_ELEMENTS and not (parser == "lxml" and name in ("html", "body")):
                found.append(f"{parser}: <{name}> element")
            for attribute, raw in element.attrs.items():
                value = " ".join(raw) if isinstance(raw, list) else str(raw)
                key = attribute.lower()
                if key.startswith("on"):
                    found.append(f"{parser}: {key} handler on <{name}>")
                elif key in DANGEROUS_ATTRIBUTES:
                    found.append(f"{parser}: {key} attribute on <{name}>")
                elif key in URL_ATTRIBUTES and scheme_of(value) not in SAFE_SCHEMES:
                    found.append(f"{parser}: <{name} {key}={value!r}>")
    return found


def telegram_dangers(message: str) -> list[str]:
    """What Telegram would refuse or a client could run, in one HTML parse-mode message."""
    found: list[str] = []
    try:
        parse_telegram_html(message)
    except Exception as error:  # the fake's parser raises TelegramHTMLError on refusal
        found.append(f"Telegram would refuse it: {error}")
    for element in BeautifulSoup(message, "html.parser").find_all(True):
        if element.name not in TELEGRAM_TAGS:
            found.append(f"<{element.name}> is not a Telegram tag")
        for attribute, raw in element.attrs.items():
            value = " ".join(raw) if isinstance(raw, list) else str(raw)
            if element.name == "a" and attribute == "href":
                if scheme_of(value) not in ("http", "https"):
                    found.append(f"a link to {value!r}")
            elif not (element.name == "span" and attribute == "class"):
                found.append(f"{attribute} attribute on <{element.name}>")
    return found


# ── the site ─────────────────────────────────────────────────────────────────────────────────


def xml_text(text: str) -> str:
    return html.escape(text, quote=False)


def rss(items: list[tuple[str, str, str, str, str]]) -> bytes:
    """(guid, title, link, description, content:encoded) → an RSS 2.0 document."""
    body = "".join(
        f"<item><guid>{xml_text(guid)}</guid><title>{xml_text(title)}</title>"
        f"<link>{xml_text(link)}</link><description>{xml_text(description)}</description>"
        f"<content:encoded>{xml_text(content)}</content:encoded></item>"
        for guid, title, link, description, content in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/">'
        f"<channel><title>Hostile</title><link>http://example.org/</link>{body}</channel></rss>"
    ).encode()


def article_page(number: int, payload: str) -> bytes:
    paragraphs = "".join(
        f"<p>{filler(1000 + 4 * number + part)} Part {part}.</p>" for part in range(4)
    )
    return (
        f"<!doctype html><html><head><title>Kyiv story {number}</title>{payload}</head><body>"
        f"<header><nav><a href='/'>Home</a></nav></header><main><article>"
        f"<h1>Kyiv story {number}</h1>{paragraphs[: len(paragraphs) // 2]}"
        f"<p>Inline: {payload} and the Kyiv talks go on with more words here.</p>{payload}"
        f"{paragraphs[len(paragraphs) // 2 :]}</article></main></body></html>"
    ).encode()


def serve_corpus(site: SampleSite) -> None:
    base = site.base_url
    in_feed = [
        (
            f"feed-{n}",
            f"Kyiv feed item {n}",
            f"{base}/never-fetched/{n}",
            f"{payload} Kyiv teaser {n}",
            f"<p>{filler(n)}</p>{payload}<p>{filler(2000 + n)}</p>",
        )
        for n, payload in enumerate(PAYLOADS)
    ]
    hostile_links = [
        (f"link-{n}", f"<script>alert(1)</script> Kyiv link {n}", link, filler(6000 + n), "")
        for n, link in enumerate(BAD_LINKS)
    ]
    site.set_file("/feed.xml", rss(in_feed + hostile_links), "application/rss+xml")
    json_feed = {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "Hostile JSON",
        "items": [
            {
                "id": f"json-{n}",
                "url": f"{base}/never-fetched/json-{n}",
                "title": f"Kyiv JSON item {n}",
                "content_html": f"<p>{filler(3000 + n)}</p>{payload}<p>{filler(4000 + n)}</p>",
            }
            for n, payload in enumerate(PAYLOADS)
        ],
    }
    site.set_file("/feed.json", json.dumps(json_feed).encode(), "application/feed+json")
    pages = [
        (f"page-{n}", f"Kyiv story {n}", f"{base}/articles/{n}.html", filler(5000 + n), "")
        for n in range(len(PAYLOADS))
    ]
    site.set_file("/pages.xml", rss(pages), "application/rss+xml")
    for n, payload in enumerate(PAYLOADS):
        site.set_file(f"/articles/{n}.html", article_page(n, payload), "text/html")


# ── the pipeline, once for the module ────────────────────────────────────────────────────────


SOURCE_TITLES = {"rss": "RSS <b>desk</b>", "json": "JSON", "pages": "Pages & <i>co</i>"}


class Output(NamedTuple):
    atom: dict[str, bytes]
    alerts: list[PendingAlert]
    warnings: list[str]


@pytest.fixture(scope="module")
def site() -> Iterator[SampleSite]:
    with SampleSite() as running:
        serve_corpus(running)
        yield running


@pytest.fixture(scope="module")
def output(site: SampleSite, tmp_path_factory: pytest.TempPathFactory) -> Output:
    """The corpus through the pipeline once for the module (it takes a few seconds)."""
    return asyncio.run(run_pipeline(site, tmp_path_factory.mktemp("xss")))


async def run_pipeline(site: SampleSite, tmp_path: Path) -> Output:
    with Store.open(f"sqlite:///{tmp_path / 'xss.sqlite3'}") as store:
        async with make_client("wirewatch-test", LIMITS) as client:
            ingestor = Ingestor(
                store=store,
                client=client,
                matcher=Matcher([Watchlist("kyiv", keywords=("Kyiv",))]),
                routes={"kyiv": (5,)},
                limits=LIMITS,
            )
            jobs = [
                SourceJob("rss", site.url("/feed.xml"), full_text="never"),
                SourceJob("json", site.url("/feed.json"), full_text="never"),
                SourceJob("pages", site.url("/pages.xml"), full_text="always"),
            ]
            warnings: list[str] = []
            for job in jobs:
                report = await ingestor.poll(job)
                assert report.error is None, report.error
                warnings += report.warnings
        publisher = Publisher(
            store=store,
            catalog=FeedCatalog(),
            output_dir=tmp_path / "feeds",
            public_url="http://127.0.0.1:8080",
            max_entries=1000,
            source_titles=SOURCE_TITLES,
        )
        specs = [
            FeedSpec("all", "All", "Everything matched", None),
            FeedSpec("kyiv", "Kyiv", "Kyiv news", "kyiv"),
            *(source_feed_spec(name, title) for name, title in SOURCE_TITLES.items()),
        ]
        publisher.publish(specs)
        atom = {spec.path: _body(publisher, spec.path) for spec in specs}
        return Output(atom, store.pending_alerts(limit=10_000), warnings)


def _body(publisher: Publisher, path: str) -> bytes:
    feed = publisher.catalog.get(path)
    assert feed is not None, path
    return feed.body


def test_the_corpus_is_large_and_varied() -> None:
    assert len(PAYLOADS) >= 100
    text = "\n".join(PAYLOADS).lower()
    for family in ("<script", "onerror", "javascript:", "data:", "vbscript:", "<svg", "<math",
                   "expression(", "&#", "<base", "http-equiv", "<iframe", "<object", "<embed",
                   "srcdoc", "formaction", "<style"):  # fmt: skip
        assert family in text, family


def test_nothing_dangerous_reaches_the_atom_feeds(output: Output) -> None:
    entries = 0
    problems: list[str] = []
    for path, body in output.atom.items():
        root = etree.fromstring(body)
        for entry in root.iterfind(f"{ATOM}entry"):
            entries += 1
            where = f"{path} {entry.findtext(f'{ATOM}id')}"
            for link in entry.iter(f"{ATOM}link"):
                if scheme_of(link.get("href", "")) not in ("http", "https"):
                    problems.append(f"{where}: link to {link.get('href')!r}")
            for construct in ("title", "summary", "content"):
                element = entry.find(f"{ATOM}{construct}")
                if element is None:
                    continue
                kind = element.get("type", "text")
                if kind == "text":
                    assert len(element) == 0  # text is text: no child elements
                    continue
                assert kind == "html", f"{where}: {construct} of type {kind}"
                problems += [f"{where} {construct}: {d}" for d in html_dangers(element.text or "")]
    assert entries >= 3 * len(PAYLOADS)  # every entry of every source made it through
    from_pages = [
        a for a in output.alerts if a.article.source == "pages" and "Part 0." in a.article.text
    ]
    assert len(from_pages) >= 0.9 * len(PAYLOADS)  # the pages' own text, payloads and all
    assert problems == []


def test_nothing_dangerous_reaches_telegram(output: Output) -> None:
    assert len(output.alerts) == 3 * len(PAYLOADS) + len(BAD_LINKS)  # one per article
    titles = SOURCE_TITLES
    problems: list[str] = []
    for alert in output.alerts:
        message = format_alert(alert, "Kyiv <i>watch</i>", titles[alert.article.source])
        problems += [f"alert {alert.id}: {d}" for d in telegram_dangers(message)]
    items = digest_items(output.alerts, {"kyiv": "Kyiv"}, titles, {})
    for part in compose_digest(items, "UTC", note="<script>", footer="</b>"):
        problems += [f"digest: {d}" for d in telegram_dangers(part.html)]
    assert problems == []


def test_hostile_entry_links_are_not_linked(output: Output) -> None:
    """An entry whose link is javascript: or data: is kept (its text may matter), but nothing
    links to it: not the Atom entry, not the alert's headline."""
    hostile = [a for a in output.alerts if a.article.title.endswith(tuple(
        f"Kyiv link {n}" for n in range(len(BAD_LINKS))))]  # fmt: skip
    assert len(hostile) == len(BAD_LINKS)
    for alert in hostile:
        message = format_alert(alert, "Kyiv")
        assert "<a " not in message and "&lt;script&gt;" in message


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ('<a href="https://ok.example/">fine</a><img src="http://ok.example/a.png">', []),
        ('<a href="mailto:desk@example.org">mail</a>', []),
        ("<p>text &lt;script&gt; as text</p>", []),
        ("<script>x</script>", ["<script> element"]),
        ('<img src=x onerror="y">', ["onerror handler on <img>", "<img src='x'>"]),
        ('<a href=" java\tscript:x">', ["<a href=' java\\tscript:x'>"]),
        ('<a href="&#x6A;avascript:x">', ["<a href='javascript:x'>"]),
        ('<p style="color:red">', ["style attribute on <p>"]),
        ("<svg><a xlink:href='javascript:x'></a></svg>", ["<svg> element"]),
    ],
)
def test_the_checker_itself(fragment: str, expected: list[str]) -> None:
    """The assertions above are only as good as this checker: it must see what it looks for."""
    found = html_dangers(fragment)
    for thing in expected:
        assert any(thing in problem for problem in found), (thing, found)
    if not expected:
        assert found == []


@pytest.mark.parametrize("link", BAD_LINKS)
def test_an_article_stored_with_a_hostile_link_is_published_without_it(link: str) -> None:
    """Articles stored before feeds.parse dropped such links must not bring them back."""
    meta = FeedMeta(
        feed_id="tag:news.example.org,2026:feed/kyiv",
        title="Kyiv",
        subtitle="",
        self_url="https://news.example.org/feeds/kyiv.atom",
        alternate_url="https://news.example.org/",
        author_name="wirewatch",
    )
    entry = AtomEntry(
        entry_id="tag:news.example.org,2026:article/1",
        title="Kyiv talks",
        link=link,
        published=None,
        updated=datetime(2026, 3, 1, tzinfo=UTC),
        author=None,
        source_title="Outlet",
        summary="",
        content_html="<p>Kyiv talks.</p>",
        categories=("kyiv",),
        related=(("Other", link), ("Fine", "https://other.example/1")),
    )
    root = etree.fromstring(render_atom(meta, [entry]))
    hrefs = [element.get("href", "") for element in root.iter(f"{ATOM}link")]
    assert "https://other.example/1" in hrefs
    assert all(scheme_of(href) in ("http", "https") for href in hrefs), hrefs
