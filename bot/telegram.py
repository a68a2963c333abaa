"""Alerts out: turn a pending alert into Telegram HTML, and deliver it through the Bot API.

Failures are sorted once, here, into ``DeliveryError`` with the facts the outbox needs and nothing
else: is it ``permanent`` (retrying the same message to the same chat cannot help), how long
Telegram asked us to wait (``retry_after``), whether Telegram may have received the message
although we got no answer (``uncertain``), whether the chat itself refuses us (``chat_refused``)
and whether the group moved to a new id (``migrate_to``). Callers never see python-telegram-bot's
exceptions.

The bot token is part of every Bot API URL, so anything that could echo a URL (PTB error messages,
httpx's request log) is scrubbed of it before it leaves this module.
"""

from __future__ import annotations

import datetime as dt
import html
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol
from zoneinfo import ZoneInfo

import httpx
import telegram
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest

from bot.mutes import button_data
from bot.store import PendingAlert
from feeds.text import highlight_html

MAX_MESSAGE_LENGTH = 4096
"""Telegram's cap on visible text, in UTF-16 code units (an emoji outside the BMP counts 2)."""
_MAX_TITLE = 300
_MAX_LABEL = 100
_MAX_TERMS_TEXT = 300
_ELLIPSIS = "…"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

alert_log = logging.getLogger("wirewatch.alerts")
_log = logging.getLogger("wirewatch.telegram")


# ---- formatting ---------------------------------------------------------------------------------


def _utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _escape(text: str) -> str:
    """Escape text for Telegram HTML: only &, < and > (Telegram supports few named entities)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _escape_attribute(text: str) -> str:
    return _escape(text).replace('"', "&quot;")


def _one_line(text: str) -> str:
    """Collapse all whitespace runs (newlines included) to single spaces."""
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    """Shorten plain text to at most ``limit`` UTF-16 units, preferring a word boundary, adding …"""
    if _utf16_length(text) <= limit:
        return text
    budget = limit - 1  # room for the ellipsis
    cut = 0
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > budget:
            break
        cut = index + 1
    clipped = text[:cut]
    space = clipped.rfind(" ")
    if space > 0 and space > cut - 40:
        clipped = clipped[:space]
    return clipped.rstrip() + _ELLIPSIS


def format_time(moment: dt.datetime, timezone: str = "UTC") -> str:
    """Format as e.g. "7 Feb 2022 18:15 UTC" or "7 Feb 2022 20:15 EET" in the reader's zone.

    Locale-independent; naive datetimes are UTC. The zone's abbreviation is shown when it has a
    real one, else its name (abbreviations like "+03" say less than "Europe/Istanbul").
    """
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    zone = dt.UTC if timezone == "UTC" else ZoneInfo(timezone)
    moment = moment.astimezone(zone)
    label = moment.tzname() or timezone
    if not label.isalpha():
        label = timezone
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} {moment:%H:%M} {label}"


def _is_linkable(url: str) -> bool:
    return url.lower().startswith(("http://", "https://")) and not any(c.isspace() for c in url)


def format_alert(
    alert: PendingAlert,
    watchlist_title: str,
    source_title: str | None = None,
    *,
    timezone: str = "UTC",
    also_reported_by: Sequence[str] = (),
) -> str:
    """Render an alert as Telegram HTML whose visible text fits in one message (4096 units).

    Layout: bold linked headline; outlet and published time (in the chat's ``timezone``); the
    watchlist and matched terms; "Also reported by" when other outlets carry the story (that list
    comes from the near-duplicate detection, not from here); a blank line; the snippet with the
    matched terms in bold. Every article- or user-supplied string is escaped. Only the snippet is
    shortened to fit (headline, labels and lists are bounded first so that the snippet always gets
    room); it is cut as plain text before escaping and highlighting, so a cut can never land
    inside a tag or an entity.
    """
    article = alert.article
    title = _clip(_one_line(article.title) or article.url or "(untitled)", _MAX_TITLE)
    outlet = _clip(_one_line(source_title or article.source), _MAX_LABEL)
    watchlist = _clip(_one_line(watchlist_title) or alert.watchlist, _MAX_LABEL)
    terms = _clip(_one_line(", ".join(alert.terms)), _MAX_TERMS_TEXT)
    others = _clip(_one_line(", ".join(o for o in also_reported_by if o.strip())), _MAX_TERMS_TEXT)

    if _is_linkable(article.url):
        headline = f'<b><a href="{_escape_attribute(article.url)}">{_escape(title)}</a></b>'
    else:
        headline = f"<b>{_escape(title)}</b>"
    published = format_time(article.published, timezone) if article.published is not None else ""
    meta = " · ".join(part for part in (outlet, published) if part)
    watch_line = f"Watchlist: {watchlist}" + (f" · matched: {terms}" if terms else "")

    # Visible text is the plain lines; the HTML lines are the same text escaped (plus tags).
    plain_lines = [title, meta, watch_line] if meta else [title, watch_line]
    if others:
        plain_lines.append(f"Also reported by: {others}")
    html_lines = [headline] + [_escape(line) for line in plain_lines[1:]]
    snippet = alert.snippet.strip()
    if not snippet:
        return "\n".join(html_lines)
    room = MAX_MESSAGE_LENGTH - _utf16_length("\n".join(plain_lines) + "\n\n")
    return "\n".join(html_lines) + "\n\n" + highlight_html(_clip(snippet, room), alert.terms)


def html_to_plain(html_text: str) -> str:
    """Strip tags and decode entities: the fallback when Telegram cannot parse our HTML."""
    return html.unescape(re.sub(r"<[^<>]*>", "", html_text))


# ---- delivery -----------------------------------------------------------------------------------


class DeliveryError(Exception):
    """A message could not be delivered, or we cannot tell whether it was.

    ``permanent``: retrying this message to this chat will not help (bot blocked, chat not found,
    message rejected). ``retry_after``: seconds Telegram asked us to wait (flood control), or
    None. ``uncertain``: the request may have reached Telegram (the answer timed out or the
    connection broke after sending), so sending again could deliver it twice. ``chat_refused``:
    the chat itself refuses the bot (blocked, kicked): no message to it can succeed.
    ``migrate_to``: the group became a supergroup with this id; send there instead.
    The message never contains the bot token.
    """

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        retry_after: float | None = None,
        uncertain: bool = False,
        chat_refused: bool = False,
        migrate_to: int | None = None,
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.uncertain = uncertain
        self.chat_refused = chat_refused
        self.migrate_to = migrate_to


LinkPreview = Literal["off", "above", "below"]


@dataclass(frozen=True, slots=True)
class SendOptions:
    """How one message is posted, beyond its chat and text (per route, see ChatRoute)."""

    thread_id: int | None = None
    """Forum topic to post into."""
    link_preview: LinkPreview = "off"
    preview_url: str | None = None
    """The link to preview (the article), when ``link_preview`` is not "off"."""
    button_url: str | None = None
    """Adds an "Open article" button under the message."""
    silent: bool = False
    """Deliver without a notification sound (the chat muted this watchlist for a while)."""
    mute_watchlist: str | None = None
    """Adds a "Mute WATCHLIST 1h" button, answered by bot.commands (callback data "mute:NAME")."""
    mute_source: str | None = None
    """Adds a "Mute OUTLET 1h" button on a row of its own (callback data "mutesrc:NAME", see
    bot.mutes); the label shows ``source_title``, or the name when that is empty."""
    source_title: str = ""


class Sender(Protocol):
    """What the alert outbox needs from a delivery channel."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        """Deliver the message; return its message id. Raises DeliveryError."""
        ...


class LoggingSender:
    """The sender used when no bot token is configured: alerts go to the log instead."""

    async def start(self) -> None:
        """Nothing to set up."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        """Log the alert at INFO on "wirewatch.alerts"; there is no message id, so return 0."""
        alert_log.info("alert for chat %s:\n%s", chat_id, html_text)
        return 0


def _token_pattern(token: str) -> re.Pattern[str]:
    """Match the token, or its secret half alone, in any letter case.

    Case matters because PTB capitalises API error descriptions ("Bad Request: x" becomes "X"),
    which lower-cases a token echoed inside them. The secret half is matched alone too (it is
    what must not leak) unless it is too short to be told apart from ordinary words.
    """
    secret = token.partition(":")[2]
    forms = [token] + ([secret] if len(secret) >= 8 else [])
    return re.compile("|".join(re.escape(form) for form in forms), re.IGNORECASE)


def _redact(text: str, pattern: re.Pattern[str]) -> str:
    return pattern.sub("<token>", text)


class _TokenRedactor(logging.Filter):
    """Redact bot tokens from records of the loggers that print Bot API URLs.

    httpx logs every request URL at INFO, and PTB's Bot logs its base URL at DEBUG when it is
    constructed; both contain the token. Logger filters see only records created on that very
    logger, hence the explicit list of names.
    """

    LOGGERS = (
        "httpx",
        "telegram",
        "telegram.Bot",
        "telegram.request.BaseRequest",
        "telegram.request.HTTPXRequest",
        "telegram.ext",
        "telegram.ext.ExtBot",
        "telegram.ext.Application",
        "telegram.ext.Updater",
    )

    def __init__(self) -> None:
        super().__init__()
        self._patterns: dict[str, re.Pattern[str]] = {}

    def protect(self, token: str) -> None:
        """Start redacting ``token`` (installs the filter on first use; idempotent)."""
        self._patterns.setdefault(token, _token_pattern(token))
        for name in self.LOGGERS:
            logging.getLogger(name).addFilter(self)

    def redact(self, text: str) -> str:
        for pattern in list(self._patterns.values()):
            text = _redact(text, pattern)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


_redactor = _TokenRedactor()


def protect_token(token: str) -> None:
    """Redact ``token`` from the log records of httpx and PTB from now on (idempotent). Call it
    before building any Bot or Application that uses the token."""
    _redactor.protect(token)


def redact_tokens(text: str) -> str:
    """``text`` with every token given to `protect_token` replaced, for logging on loggers the
    filter does not cover (an error's text may echo a request URL)."""
    return _redactor.redact(text)


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError,
             httpx.WriteTimeout, httpx.UnsupportedProtocol, httpx.LocalProtocolError)  # fmt: skip
"""httpx failures that happen before a whole request has left us: Telegram cannot have acted on
it, so sending again is safe. Any other network failure (read timeout, connection closed before
the answer) may come after Telegram accepted the message."""


def _may_have_arrived(error: NetworkError) -> bool:
    """Whether Telegram may have received and acted on the request that failed with ``error``.

    PTB wraps httpx's exception (``raise ... from err``), so the cause tells which stage failed.
    A 5xx answer is a NetworkError without an httpx cause: Telegram answered, and an error answer
    means the message was not accepted.
    """
    cause = error.__cause__
    if not isinstance(cause, httpx.HTTPError):
        return False
    return not isinstance(cause, _NOT_SENT)


def _preview_options(options: SendOptions) -> telegram.LinkPreviewOptions:
    if options.link_preview == "off" or not options.preview_url:
        return telegram.LinkPreviewOptions(is_disabled=True)
    return telegram.LinkPreviewOptions(
        url=options.preview_url, show_above_text=options.link_preview == "above"
    )


def _retry_seconds(error: RetryAfter) -> float:
    """Seconds to wait, whether PTB gives an int (default) or a timedelta (PTB_TIMEDELTA=1)."""
    value = error.retry_after
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    return float(value)


MUTE_BUTTON_LABEL = "1h"
MUTE_BUTTON = dt.timedelta(hours=1)
"""How long the mute buttons under an alert mute its watchlist or its source in that chat."""

CONNECTIONS = 16
"""HTTP connections to the Bot API: enough to keep 30 messages a second flowing when each
request takes a few hundred milliseconds."""


class TelegramSender:
    """Sends HTML messages through python-telegram-bot's Bot, sorting its failures once.

    ``api_url`` points at Telegram or at a compatible server (a self-hosted Bot API, or the fake in
    the tests); requests go to ``{api_url}/bot{token}/{method}`` through PTB's own HTTP stack.

    Note: PTB 22 emits a PTBDeprecationWarning when it builds a RetryAfter unless the environment
    has PTB_TIMEDELTA=1; both value types are handled here.
    """

    def __init__(
        self, token: str, api_url: str = "https://api.telegram.org", *, timeout: float = 20.0
    ) -> None:
        # Before the Bot exists: its constructor already logs URLs that contain the token.
        _redactor.protect(token)
        self._token_pattern = _token_pattern(token)
        api_url = api_url.rstrip("/")

        def request() -> HTTPXRequest:
            return HTTPXRequest(
                connection_pool_size=CONNECTIONS,
                connect_timeout=timeout,
                read_timeout=timeout,
                write_timeout=timeout,
                pool_timeout=timeout,
            )

        self._bot = telegram.Bot(
            token,
            base_url=f"{api_url}/bot",
            base_file_url=f"{api_url}/file/bot",
            request=request(),
            get_updates_request=request(),
        )
        self._started = False

    async def start(self) -> None:
        """Open the HTTP client and check the token with getMe. Raises DeliveryError:
        permanent when Telegram rejects the token (a configuration error), temporary when it
        cannot be reached (send() tries again, so alerts wait in the outbox meanwhile)."""
        try:
            await self._bot.initialize()
        except InvalidToken:
            failure = DeliveryError(
                "Telegram rejected the bot token (check telegram.token)", permanent=True
            )
        except TelegramError as error:
            failure = self._sort(error)
        else:
            self._started = True
            return
        await self.stop()
        raise failure

    async def stop(self) -> None:
        """Close the HTTP client; safe to call twice or without start()."""
        self._started = False
        await self._bot.shutdown()

    async def send(self, chat_id: int, html_text: str, options: SendOptions | None = None) -> int:
        """Send an HTML message; return Telegram's message_id. Raises DeliveryError.

        If Telegram cannot parse the HTML, the same message is sent once more as plain text (tags
        stripped, entities decoded): a readable alert beats a lost one.

        DeliveryError is raised outside the ``except`` blocks on purpose, so that PTB's exception
        (whose chain can carry the request URL, and so the token) is not attached as context.
        """
        if not self._started:
            await self.start()  # Telegram was unreachable at start-up: try again now
        options = options or SendOptions()
        preview = _preview_options(options)
        buttons = []
        if options.button_url and _is_linkable(options.button_url):
            buttons.append(telegram.InlineKeyboardButton("Open article", url=options.button_url))
        data = button_data("watchlist", options.mute_watchlist) if options.mute_watchlist else None
        if data:
            label = _clip(f"🔕 Mute {options.mute_watchlist} {MUTE_BUTTON_LABEL}", 40)
            buttons.append(telegram.InlineKeyboardButton(label, callback_data=data))
        rows = [buttons] if buttons else []
        data = button_data("source", options.mute_source) if options.mute_source else None
        if data:
            outlet = options.source_title or options.mute_source
            label = _clip(f"🔕 Mute {outlet} {MUTE_BUTTON_LABEL}", 40)
            rows.append([telegram.InlineKeyboardButton(label, callback_data=data)])
        markup = telegram.InlineKeyboardMarkup(rows) if rows else None
        try:
            message = await self._bot.send_message(
                chat_id,
                html_text,
                parse_mode=ParseMode.HTML,
                link_preview_options=preview,
                message_thread_id=options.thread_id,
                reply_markup=markup,
                disable_notification=options.silent,
            )
        except TelegramError as error:
            failure = self._sort(error)
            unparsable = isinstance(error, BadRequest) and (
                "can't parse entities" in str(error).lower()
            )
        else:
            return message.message_id
        if not unparsable:
            raise failure
        _log.warning(
            "Telegram could not parse alert HTML for chat %s (%s); sending as plain text",
            chat_id,
            failure,
        )
        try:
            message = await self._bot.send_message(
                chat_id,
                html_to_plain(html_text),
                link_preview_options=preview,
                message_thread_id=options.thread_id,
                reply_markup=markup,
                disable_notification=options.silent,
            )
        except TelegramError as error:
            failure = self._sort(error)
        else:
            return message.message_id
        raise failure

    def _sort(self, error: TelegramError) -> DeliveryError:
        """Map PTB's exception tree onto DeliveryError, the one place that knows it.

        The message keeps Telegram's description (minus the token) so that an operator reading
        the outbox can tell "blocked by the user" from "chat not found".
        """
        text = _redact(str(error), self._token_pattern)
        name = type(error).__name__
        if isinstance(error, RetryAfter):
            seconds = _retry_seconds(error)
            return DeliveryError(
                f"Telegram flood control: retry after {seconds:g}s",
                permanent=False,
                retry_after=seconds,
            )
        if isinstance(error, ChatMigrated):
            return DeliveryError(
                f"chat migrated to supergroup {error.new_chat_id}",
                permanent=False,
                migrate_to=int(error.new_chat_id),
            )
        if isinstance(error, InvalidToken):
            # The token, not this alert, is at fault: keep the alert queued for when it is fixed.
            return DeliveryError(f"{name}: {text}", permanent=False)
        if isinstance(error, Forbidden):
            return DeliveryError(f"{name}: {text}", permanent=True, chat_refused=True)
        if isinstance(error, BadRequest):
            # Every other 400 (chat not found, message too long, bad parameters) is about this
            # message or chat, and sending the same request again will fail the same way.
            return DeliveryError(f"{name}: {text}", permanent=True)
        if isinstance(error, NetworkError):  # includes TimedOut and 5xx answers
            return DeliveryError(
                f"{name}: {text}", permanent=False, uncertain=_may_have_arrived(error)
            )
        return DeliveryError(f"{name}: {text}", permanent=False)
