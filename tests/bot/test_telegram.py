"""Alerts out: formatting (pure, table-driven) and delivery through PTB to a fake Bot API."""

from __future__ import annotations

import datetime as dt
import logging
import socket
from collections.abc import Iterator

import httpx
import pytest

from bot.store import PendingAlert, StoredArticle
from bot.telegram import (
    DeliveryError,
    LoggingSender,
    SendOptions,
    TelegramSender,
    format_alert,
    format_time,
    html_to_plain,
)
from tests.support.fake_telegram import (
    FakeTelegram,
    TelegramHTMLError,
    parse_telegram_html,
    utf16_length,
)

UTC = dt.UTC
PUBLISHED = dt.datetime(2022, 2, 7, 18, 15, tzinfo=UTC)


def make_alert(
    *,
    title: str = "Troops gather near border",
    url: str = "https://news.example/world/1",
    snippet: str = "Russian troops gathered near the Ukraine border on Monday.",
    terms: tuple[str, ...] = ("ukraine", "troops"),
    source: str = "example-news",
    published: dt.datetime | None = PUBLISHED,
    chat_id: int = 42,
) -> PendingAlert:
    article = StoredArticle(
        id=1,
        source=source,
        guid="guid-1",
        url=url,
        title=title,
        text=snippet,
        html=f"<p>{snippet}</p>",
        author=None,
        published=published,
        fetched_at=PUBLISHED,
        updated_at=PUBLISHED,
    )
    return PendingAlert(
        id=7,
        chat_id=chat_id,
        watchlist="ukraine",
        terms=terms,
        snippet=snippet,
        article=article,
        attempts=0,
    )


# ---- format_alert ------------------------------------------------------------------------------


def test_format_alert_layout() -> None:
    text = format_alert(make_alert(), "Ukraine crisis", "Example News")
    assert text == (
        '<b><a href="https://news.example/world/1">Troops gather near border</a></b>\n'
        "Example News · 7 Feb 2022 18:15 UTC\n"
        "Watchlist: Ukraine crisis · matched: ukraine, troops\n"
        "\n"
        "Russian <b>troops</b> gathered near the <b>Ukraine</b> border on Monday."
    )
    parse_telegram_html(text)


def test_format_alert_falls_back_to_source_name_and_omits_missing_time() -> None:
    text = format_alert(make_alert(published=None, terms=()), "Ukraine crisis")
    lines = text.split("\n")
    assert lines[1] == "example-news"
    assert lines[2] == "Watchlist: Ukraine crisis"


def test_format_alert_escapes_hostile_strings() -> None:
    alert = make_alert(
        title='<script>alert("x")</script> Tom & Jerry',
        url='https://evil.example/?a=1&b="><script>',
        snippet="Use <b>bold</b> & <i>it</i>; 5 > 3 &amp; done",
        source="A&B <News>",
        terms=("<script>",),
    )
    text = format_alert(alert, 'Watch "<this>" & that')
    assert "<script>" not in text
    assert 'href="https://evil.example/?a=1&amp;b=&quot;&gt;&lt;script&gt;"' in text
    visible = parse_telegram_html(text)
    assert '<script>alert("x")</script> Tom & Jerry' in visible
    assert "A&B <News> · 7 Feb 2022 18:15 UTC" in visible
    assert 'Watchlist: Watch "<this>" & that · matched: <script>' in visible
    assert "Use <b>bold</b> & <i>it</i>; 5 > 3 &amp; done" in visible


@pytest.mark.parametrize(
    "url", ["javascript:alert(1)", "", "ftp://example.org/x", "https://bad url.example/"]
)
def test_format_alert_links_only_http_urls(url: str) -> None:
    text = format_alert(make_alert(url=url), "W")
    assert "<a " not in text
    parse_telegram_html(text)


@pytest.mark.parametrize(
    ("snippet", "terms", "expected"),
    [
        ("UKRAINE and Ukrainian", ("ukraine",), "<b>UKRAINE</b> and Ukrainian"),
        ("President Zelenskyy spoke", ("zelenskyy",), "President <b>Zelenskyy</b> spoke"),
        ("Réunion de l'ONU", ("reunion",), "<b>Réunion</b> de l'ONU"),
        ("new york times in New York", ("new york",), "<b>new york</b> times in <b>New York</b>"),
        ("NATO and NATO-led", ("nato",), "<b>NATO</b> and <b>NATO</b>-led"),
        ("Tom & Jerry", ("tom",), "<b>Tom</b> &amp; Jerry"),
        ("troops (a.b) x", ("a.b",), "troops (<b>a.b</b>) x"),
        ("no terms here", (), "no terms here"),
    ],
)
def test_format_alert_highlights_whole_words(
    snippet: str, terms: tuple[str, ...], expected: str
) -> None:
    text = format_alert(make_alert(snippet=snippet, terms=terms), "W")
    assert text.split("\n\n", 1)[1] == expected
    parse_telegram_html(text)


@pytest.mark.parametrize(
    "unit",
    ["lorem ipsum ", "a&b<c> ", "Ukraine ", "😀", "x" * 50, "é"],
    ids=["words", "escapes", "highlighted", "astral", "no-spaces", "accents"],
)
def test_format_alert_caps_visible_text_at_4096(unit: str) -> None:
    snippet = (unit * (10_000 // len(unit) + 1))[:10_000]
    alert = make_alert(snippet=snippet, title="T" * 1000, terms=("ukraine",))
    text = format_alert(alert, "W" * 500, "S" * 500)
    visible = parse_telegram_html(text)
    assert utf16_length(visible) <= 4096
    assert utf16_length(visible) > 3500
    assert visible.endswith("…")


def test_format_alert_keeps_short_snippet_whole() -> None:
    text = format_alert(make_alert(snippet="x" * 3000), "W")
    assert text.endswith("x" * 3000)


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (PUBLISHED, "7 Feb 2022 18:15 UTC"),
        (dt.datetime(2022, 2, 7, 19, 15, tzinfo=dt.timezone(dt.timedelta(hours=1))),
         "7 Feb 2022 18:15 UTC"),
        (dt.datetime(2023, 12, 31, 23, 5), "31 Dec 2023 23:05 UTC"),
        (dt.datetime(2024, 1, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=5))),
         "31 Dec 2023 20:00 UTC"),
    ],
)  # fmt: skip
def test_format_time(moment: dt.datetime, expected: str) -> None:
    assert format_time(moment) == expected


@pytest.mark.parametrize(
    ("html_text", "plain"),
    [
        ("<b>unclosed &amp; stuff", "unclosed & stuff"),
        ('<a href="https://x">link</a> &lt;tag&gt;', "link <tag>"),
        ("5 &gt 3", "5 > 3"),
    ],
)
def test_html_to_plain(html_text: str, plain: str) -> None:
    assert html_to_plain(html_text) == plain


# ---- the fake's HTML validator -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("html_text", "visible"),
    [
        ("plain text", "plain text"),
        ("<b>bold</b> <strong>s</strong> <i>i</i> <em>e</em>", "bold s i e"),
        ("<u>u</u><ins>i</ins><s>s</s><strike>k</strike><del>d</del>", "uiskd"),
        ('<span class="tg-spoiler">x</span><tg-spoiler>y</tg-spoiler>', "xy"),
        ('<a href="https://e.com/?a=1&amp;b=&quot;2&quot;">l</a>', "l"),
        ("<a href='https://e.com'>single</a>", "single"),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1"),
        ("<blockquote>q</blockquote><blockquote expandable>r</blockquote>", "qr"),
        ('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>', "👍"),
        ("<B>caps</B>", "caps"),
        ("<b>a <i>nested <u>deep</u></i></b>", "a nested deep"),
        ("&lt;&gt;&amp;&quot;&#65;&#x42;", '<>&"AB'),
    ],
)
def test_validator_accepts(html_text: str, visible: str) -> None:
    assert parse_telegram_html(html_text) == visible


@pytest.mark.parametrize(
    ("html_text", "message"),
    [
        ("<script>x</script>", 'Unsupported start tag "script"'),
        ("<br/>", "Unsupported start tag"),
        ("<b>open", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("a < b", "Unclosed start tag at byte offset 2"),
        ("a < b > c", "Invalid tag at byte offset 2"),
        ("<b", "Unclosed start tag at byte offset 0"),
        ("5 > 3", 'Character ">" must be escaped'),
        ("Tom & Jerry", 'Character "&" must be escaped at byte offset 4'),
        ("&nbsp;", 'Unsupported HTML entity "&nbsp;"'),
        ("&lt", 'Character "&" must be escaped'),
        ("&#0;", "Invalid HTML entity"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler"'),
        ("<a>x</a>", 'Tag "a" must have attribute "href"'),
        ('<a href="https://a"><a href="https://b">x</a></a>', "Nested links"),
        ("<tg-emoji>x</tg-emoji>", "Custom emoji identifier"),
        ('<a href="x&y">z</a>', 'Character "&" must be escaped'),
        ("é<b>", 'Can\'t find end tag corresponding to start tag "b"'),
        ("é</b>", "Unexpected end tag at byte offset 2"),
    ],
)
def test_validator_rejects(html_text: str, message: str) -> None:
    with pytest.raises(TelegramHTMLError) as caught:
        parse_telegram_html(html_text)
    assert message in str(caught.value)


# ---- the fake server itself ----------------------------------------------------------------


@pytest.fixture
def api() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


def test_fake_answers_like_telegram(api: FakeTelegram) -> None:
    with httpx.Client(base_url=f"{api.base_url}/bot{api.token}") as client:
        unknown = client.post("/notAMethod")
        assert unknown.status_code == 404
        assert unknown.json()["ok"] is False
        ok = client.post(
            "/sendMessage", json={"chat_id": 5, "text": "<b>x</b>", "parse_mode": "HTML"}
        )
        assert ok.json()["result"]["message_id"] == 1
        long = client.post("/sendMessage", data={"chat_id": "5", "text": "x" * 4097})
        assert long.json() == {
            "ok": False,
            "error_code": 400,
            "description": "Bad Request: message is too long",
        }
        bad = client.post(
            "/sendMessage", data={"chat_id": "5", "text": "<x>", "parse_mode": "HTML"}
        )
        assert bad.json()["description"].startswith("Bad Request: can't parse entities: ")
        assert client.post("/getUpdates").json() == {"ok": True, "result": []}
        assert client.post("/deleteWebhook").json() == {"ok": True, "result": True}
    with httpx.Client(base_url=api.base_url) as client:
        assert client.post("/bot1:WRONG/getMe").status_code == 401
    assert [(m.chat_id, m.text) for m in api.sent] == [(5, "<b>x</b>")]


# ---- TelegramSender against the fake -------------------------------------------------------


@pytest.fixture(autouse=True)
def _timedelta_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    """PTB 22 warns on every RetryAfter unless opted in to timedelta values; tests run -W error."""
    monkeypatch.setenv("PTB_TIMEDELTA", "1")


async def test_send_delivers_html(api: FakeTelegram) -> None:
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        text = format_alert(make_alert(), "Ukraine crisis", "Example News")
        first = await sender.send(42, text)
        second = await sender.send(43, "<i>second</i>")
    finally:
        await sender.stop()
    assert (first, second) == (1, 2)
    sent = api.sent
    assert [(m.chat_id, m.text, m.parse_mode) for m in sent] == [
        (42, text, "HTML"),
        (43, "<i>second</i>", "HTML"),
    ]
    assert sent[0].params["link_preview_options"] == {"is_disabled": True}


async def test_flood_control_gives_retry_after(api: FakeTelegram) -> None:
    api.fail_next("sendMessage", 429, "Too Many Requests: retry after 7", retry_after=7)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
        assert await sender.send(42, "hello again") == 1
    finally:
        await sender.stop()
    assert caught.value.permanent is False
    assert caught.value.retry_after == 7.0


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")
async def test_flood_control_with_integer_retry_after(
    api: FakeTelegram, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PTB_TIMEDELTA")
    api.fail_next("sendMessage", 429, "Too Many Requests: retry after 3", retry_after=3)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
    finally:
        await sender.stop()
    assert caught.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "description"),
    [
        (403, "Forbidden: bot was blocked by the user"),
        (400, "Bad Request: chat not found"),
        (400, "Bad Request: message is too long"),
        (403, "Forbidden: bot was kicked from the group chat"),
    ],
)
async def test_permanent_failures(api: FakeTelegram, status: int, description: str) -> None:
    api.fail_next("sendMessage", status, description)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
    finally:
        await sender.stop()
    assert caught.value.permanent is True
    assert caught.value.retry_after is None
    assert api.token not in str(caught.value)


async def test_blocked_chat_is_permanent(api: FakeTelegram) -> None:
    api.blocked_chats.add(42)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
        assert await sender.send(43, "hello") == 1
    finally:
        await sender.stop()
    assert caught.value.permanent is True
    assert "blocked" in str(caught.value)


async def test_server_error_is_not_permanent(api: FakeTelegram) -> None:
    api.fail_next("sendMessage", 502, "Bad Gateway")
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
    finally:
        await sender.stop()
    assert caught.value.permanent is False


async def test_unparsable_html_is_sent_once_as_plain_text(api: FakeTelegram) -> None:
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        message_id = await sender.send(42, "<b>Alert <unknown>x</unknown> &amp; more")
    finally:
        await sender.stop()
    assert message_id == 1
    assert [(m.text, m.parse_mode) for m in api.sent] == [("Alert x & more", None)]
    assert [method for method, _ in api.calls] == ["getMe", "sendMessage", "sendMessage"]


async def test_plain_text_fallback_is_tried_only_once(api: FakeTelegram) -> None:
    api.fail_next("sendMessage", 400, "Bad Request: can't parse entities: nope", times=2)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "<b>x</b>")
    finally:
        await sender.stop()
    assert caught.value.permanent is True
    assert [method for method, _ in api.calls] == ["getMe", "sendMessage", "sendMessage"]
    assert api.sent == []


async def test_unreachable_server_is_not_permanent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api = FakeTelegram()
    api.start()
    sender = TelegramSender(api.token, api.base_url, timeout=2)
    try:
        await sender.start()
        api.stop()
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
    finally:
        api.stop()
        await sender.stop()
    assert caught.value.permanent is False
    assert caught.value.retry_after is None
    assert caught.value.uncertain is False  # the connection failed: nothing reached Telegram
    assert api.token not in str(caught.value)
    assert "HTTP Request" in caplog.text  # httpx did log the request URL, scrubbed
    assert api.token not in caplog.text


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def test_start_against_closed_port_is_not_permanent() -> None:
    token = "999:SECRET-TOKEN"
    sender = TelegramSender(token, f"http://127.0.0.1:{_closed_port()}", timeout=2)
    with pytest.raises(DeliveryError) as caught:
        await sender.start()
    await sender.stop()
    assert caught.value.permanent is False
    assert token not in str(caught.value)


async def test_rejected_token_is_permanent_and_never_echoed(
    api: FakeTelegram, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = "777:NOT-THE-RIGHT-ONE"
    sender = TelegramSender(token, api.base_url, timeout=5)
    with pytest.raises(DeliveryError) as caught:
        await sender.start()
    await sender.stop()
    assert caught.value.permanent is True
    assert token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None
    assert token not in caplog.text


async def test_token_echoed_by_server_is_scrubbed(api: FakeTelegram) -> None:
    api.fail_next("sendMessage", 400, f"Bad Request: invalid url /bot{api.token}/sendMessage")
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "hello")
    finally:
        await sender.stop()
    assert api.token not in str(caught.value)
    # PTB lower-cases the description after its first letter; redaction must not care.
    assert "/bot<token>/sendmessage" in str(caught.value)


async def test_send_before_start_fails_cleanly() -> None:
    sender = TelegramSender("1:X", "http://127.0.0.1:9")
    with pytest.raises(DeliveryError) as caught:
        await sender.send(42, "hello")
    assert caught.value.permanent is False


# ---- LoggingSender ---------------------------------------------------------------------------


async def test_logging_sender_logs_and_returns_zero(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wirewatch.alerts")
    sender = LoggingSender()
    await sender.start()
    assert await sender.send(42, "<b>Alert</b>") == 0
    await sender.stop()
    [record] = [r for r in caplog.records if r.name == "wirewatch.alerts"]
    assert record.levelno == logging.INFO
    assert "<b>Alert</b>" in record.getMessage()
    assert "42" in record.getMessage()


# ---- routes, topics, previews, and failures the outbox must tell apart ------------------------


def test_format_alert_shows_the_time_in_the_chat_time_zone() -> None:
    text = format_alert(make_alert(), "Ukraine crisis", "Example News", timezone="Europe/Kyiv")
    assert "Example News · 7 Feb 2022 20:15 EET" in text
    summer = make_alert(published=dt.datetime(2022, 7, 7, 18, 15, tzinfo=UTC))
    assert "21:15 EEST" in format_alert(summer, "w", timezone="Europe/Kyiv")


@pytest.mark.parametrize(
    ("moment", "zone", "expected"),
    [
        (PUBLISHED, "UTC", "7 Feb 2022 18:15 UTC"),
        (PUBLISHED, "America/New_York", "7 Feb 2022 13:15 EST"),
        (PUBLISHED, "Asia/Tokyo", "8 Feb 2022 03:15 JST"),
        (PUBLISHED, "Europe/Istanbul", "7 Feb 2022 21:15 Europe/Istanbul"),  # "+03" says less
    ],
)
def test_format_time_in_zones(moment: dt.datetime, zone: str, expected: str) -> None:
    assert format_time(moment, zone) == expected


def test_format_alert_names_other_outlets_escaped() -> None:
    text = format_alert(
        make_alert(), "Ukraine crisis", "Example News", also_reported_by=["Reuters", "<AP & Co>"]
    )
    assert "\nAlso reported by: Reuters, &lt;AP &amp; Co&gt;\n" in text
    parse_telegram_html(text)
    assert "Also reported by" not in format_alert(make_alert(), "w", also_reported_by=[" "])


def test_format_alert_with_other_outlets_still_fits() -> None:
    alert = make_alert(snippet="word " * 2000)
    text = format_alert(alert, "w", also_reported_by=["Outlet " * 100])
    assert utf16_length(parse_telegram_html(text)) <= 4096


async def test_route_options_reach_telegram(api: FakeTelegram) -> None:
    api.forums[-100] = {12}
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        url = "https://news.example/world/1"
        await sender.send(
            -100, "<b>x</b>", SendOptions(thread_id=12, link_preview="above", preview_url=url)
        )
        await sender.send(42, "<b>y</b>", SendOptions(link_preview="below", button_url=url))
    finally:
        await sender.stop()
    topic, private = api.sent
    assert topic.params["message_thread_id"] == 12
    assert topic.params["link_preview_options"] == {"url": url, "show_above_text": True}
    assert "reply_markup" not in topic.params
    assert private.params["link_preview_options"]["is_disabled"] is True  # nothing to preview
    assert private.params["reply_markup"] == {
        "inline_keyboard": [[{"text": "Open article", "url": url}]]
    }
    assert not topic.params.get("disable_notification")  # a normal alert makes a sound


async def test_an_alert_offers_a_mute_button(api: FakeTelegram) -> None:
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        url = "https://news.example/world/1"
        await sender.send(42, "x", SendOptions(button_url=url, mute_watchlist="ukraine"))
        await sender.send(42, "y", SendOptions(mute_watchlist="w" * 70))  # data over 64 bytes
    finally:
        await sender.stop()
    first, second = api.sent
    assert first.params["reply_markup"] == {
        "inline_keyboard": [
            [
                {"text": "Open article", "url": url},
                {"text": "🔕 Mute ukraine 1h", "callback_data": "mute:ukraine"},
            ]
        ]
    }
    assert "reply_markup" not in second.params


async def test_a_silent_message_disables_the_notification(api: FakeTelegram) -> None:
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        await sender.send(42, "x", SendOptions(silent=True))
    finally:
        await sender.stop()
    assert api.sent[0].params["disable_notification"] is True


async def test_a_missing_forum_topic_is_permanent(api: FakeTelegram) -> None:
    api.forums[-100] = {12}
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(-100, "x", SendOptions(thread_id=13))
    finally:
        await sender.stop()
    assert caught.value.permanent is True
    assert "thread not found" in str(caught.value)


async def test_a_blocked_bot_refuses_the_whole_chat(api: FakeTelegram) -> None:
    api.blocked_chats.add(42)
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "x")
    finally:
        await sender.stop()
    assert (caught.value.permanent, caught.value.chat_refused) == (True, True)


async def test_an_upgraded_group_gives_its_new_id(api: FakeTelegram) -> None:
    api.migrated_chats[-5] = -1005
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(-5, "x")
        await sender.send(-1005, "x")
    finally:
        await sender.stop()
    assert caught.value.migrate_to == -1005
    assert caught.value.permanent is False
    assert [m.chat_id for m in api.sent] == [-1005]


async def test_a_timeout_after_telegram_took_the_message_is_uncertain(api: FakeTelegram) -> None:
    api.hang_after(1)
    sender = TelegramSender(api.token, api.base_url, timeout=0.5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "x")
    finally:
        api.release()
        await sender.stop()
    assert caught.value.uncertain is True
    assert caught.value.permanent is False
    assert [m.text for m in api.sent] == ["x"]  # Telegram has it: sending again would duplicate


async def test_a_server_error_is_certain_not_delivered(api: FakeTelegram) -> None:
    api.fail_next("sendMessage", 500, "Internal Server Error")
    sender = TelegramSender(api.token, api.base_url, timeout=5)
    await sender.start()
    try:
        with pytest.raises(DeliveryError) as caught:
            await sender.send(42, "x")
    finally:
        await sender.stop()
    assert (caught.value.permanent, caught.value.uncertain) == (False, False)


def test_the_fake_enforces_telegrams_limits() -> None:
    with (
        FakeTelegram(enforce_limits=True) as fake,
        httpx.Client(base_url=f"{fake.base_url}/bot{fake.token}") as client,
    ):

        def send(chat: int) -> httpx.Response:
            return client.post("/sendMessage", json={"chat_id": chat, "text": "x"})

        assert send(1).status_code == 200
        again = send(1)
        assert again.status_code == 429
        assert again.json()["parameters"] == {"retry_after": 1}
        assert all(send(chat).status_code == 200 for chat in range(2, 31))  # 30 in this second
        assert send(31).status_code == 429  # the 31st message within a second, any chat
        assert fake.too_many_requests == 2
