"""The bot in chat: commands answered over getUpdates long polling.

Anyone: /start and /help list the commands, /watchlists what is watched (and which of it comes to
this chat), /status the health of the sources and the delivery backlog, /latest a watchlist's
newest matches. Admins only (user ids in
`telegram.admins`): /add WATCHLIST TERM, /remove WATCHLIST TERM, /subscribe WATCHLIST (this chat,
this topic), /unsubscribe WATCHLIST, and /addsource URL [NAME] (bot.source_commands: discovery
behind the SSRF guard, polled from the next restart). Those edit the YAML file
(bot/config_edit.py: comments and order kept, validated, atomic) and hand the new settings to
``on_change``, which applies them without a restart; anyone else gets a refusal and nothing
changes.

The replies are built by pure functions (`help_text`, `watchlists_text`, `status_text`), tested
with tables; `ChatCommands` is the thin python-telegram-bot wiring: one Application, one handler
per command, long polling, the command list registered with Telegram at start. Replies are plain
text (no parse mode), so nothing a user or an outlet wrote can break them, and they go to the chat
and forum topic the command came from.

/mute WATCHLIST DURATION makes that watchlist's alerts to this chat arrive silently (no
notification) until the time is up; /mute source SOURCE DURATION does the same for everything one
source (outlet) sends to this chat, whatever the watchlist; /unmute ends them. A mute never drops
or holds back an alert (bot.mutes). The two "Mute" buttons under each alert mute its watchlist or
its source for an hour. Anyone in a chat may mute it, as anyone there can silence their phone;
/status lists the mutes in force there.

The grammar is decided by the number of words, so a watchlist that happens to be called "source"
still works: /mute NAME DURATION is always a watchlist, and three words must start with
"watchlist" or "source". /unmute alone ends every mute in the chat, /unmute NAME a watchlist's,
/unmute source NAME (or watchlist NAME) the one named.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from telegram import BotCommand, Update
from telegram.error import TelegramError
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

from .config_edit import ConfigEditError, add_term, remove_term, subscribe, unsubscribe
from .health import WINDOW, SourceHealth, source_health
from .mutes import BUTTON_PATTERN, ActiveMute, MuteKind, parse_button_data
from .settings import Settings, SettingsError, parse_duration
from .source_commands import add_source_text
from .store import FeedItem, Store
from .telegram import MUTE_BUTTON, format_time, protect_token, redact_tokens

log = logging.getLogger("wirewatch.commands")

COMMANDS: tuple[tuple[str, str], ...] = (
    ("start", "what this bot does"),
    ("help", "the commands"),
    ("watchlists", "what is watched, and what comes to this chat"),
    ("status", "source health and alerts waiting"),
    ("latest", "WATCHLIST: its five newest matches"),
    ("mute", "[source] NAME DURATION: a watchlist's or source's alerts arrive silently (e.g. 2h)"),
    ("unmute", "[source] [NAME]: end a mute (all, without a name)"),
    ("add", "WATCHLIST TERM: watch one more term (admins)"),
    ("remove", "WATCHLIST TERM: stop watching a term (admins)"),
    ("subscribe", "WATCHLIST: send its alerts here (admins)"),
    ("unsubscribe", "WATCHLIST: stop sending its alerts here (admins)"),
    ("addsource", "URL [NAME]: add a news source, polled from the next restart (admins)"),
)
REFUSAL = (
    "Only the bot's admins (telegram.admins in the configuration) can change watchlists "
    "and sources."
)
POLL_TIMEOUT = 10
"""Seconds a getUpdates request waits for news (long polling); stopping does not wait for it."""
_MAX_REPLY = 4000
"""Under Telegram's 4096 limit, with room for the "…" line."""


def help_text() -> str:
    lines = ["wirewatch watches news sources and alerts this chat when a watchlist matches.", ""]
    lines += [f"/{name} - {description}" for name, description in COMMANDS]
    return "\n".join(lines)


def watchlists_text(settings: Settings, chat_id: int) -> str:
    """Every watchlist in words, those routed to ``chat_id`` marked with a bell."""
    lines = []
    for watchlist in settings.watchlists:
        here = any(route.chat == chat_id for route in watchlist.chats)
        mark = "🔔 " if here else ""
        lines.append(f"{mark}{watchlist.name} ({watchlist.title}): {watchlist.describe()}")
    lines.append("")
    lines.append("🔔 = alerts come to this chat")
    return _fit("\n".join(lines))


def status_text(
    health: Sequence[SourceHealth], outbox: Mapping[str, int], mutes: Sequence[ActiveMute] = ()
) -> str:
    """Counts of sources by status, the ones that need a look, the outbox by state, and the
    mutes in force in the asking chat."""
    by_status = Counter(row.status for row in health)
    summary = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    lines = [f"Sources: {summary or 'none'}"]
    for row in health:
        if row.status in ("failing", "disabled", "silent"):
            detail = row.disabled_reason or row.last_error or "no new article for a long time"
            lines.append(f"- {row.name}: {row.status} ({detail})")
    waiting = outbox.get("pending", 0) + outbox.get("sending", 0)
    lines.append(
        f"Alerts: {waiting} waiting, {outbox.get('sent', 0) + outbox.get('logged', 0)} sent, "
        f"{outbox.get('failed', 0)} failed, {outbox.get('unknown', 0)} outcome unknown"
    )
    if mutes:
        lines.append("Muted here (alerts arrive silently):")
        lines += [f"- {m.kind} {m.name} until {format_time(m.until)}" for m in mutes]
    return _fit("\n".join(lines))


LATEST = 5


def latest_text(
    settings: Settings, words: Sequence[str], items: Callable[[str], Sequence[FeedItem]]
) -> str:
    """The newest matches of the watchlist named in ``words``, newest first, with their links."""
    names = [watchlist.name for watchlist in settings.watchlists]
    if not words:
        return f"Usage: /latest WATCHLIST (one of: {', '.join(names)})"
    name = words[0]
    if name not in names:
        return f"There is no watchlist named {name} (try one of: {', '.join(names)})."
    found = items(name)
    if not found:
        return f"Nothing has matched {name} yet."
    titles = {source.name: source.title for source in settings.sources}
    lines = [f"Latest for {name}:"]
    for item in found:
        article = item.article
        outlet = titles.get(article.source, article.source)
        when = format_time(article.published) if article.published else ""
        lines.append(f"• {' '.join(article.title.split())} ({outlet}{', ' if when else ''}{when})")
        if article.url:
            lines.append(f"  {article.url}")
    return _fit("\n".join(lines))


MAX_MUTE = timedelta(days=30)


_KINDS: tuple[MuteKind, ...] = ("watchlist", "source")
MUTE_USAGE = (
    "Usage: /mute WATCHLIST DURATION or /mute source SOURCE DURATION "
    "(e.g. /mute ukraine 2h, /mute source bbc 1d)"
)
UNMUTE_USAGE = "Usage: /unmute (every mute here), /unmute WATCHLIST or /unmute source SOURCE"


def mute_text(
    settings: Settings,
    words: Sequence[str],
    mute: Callable[[MuteKind, str, datetime], None],
    now: datetime,
) -> str:
    """Parse /mute [watchlist|source] NAME DURATION, record it through ``mute``, say until when."""
    if len(words) == 2:
        kind: MuteKind = "watchlist"
        name, duration = words
    elif len(words) == 3 and words[0] in _KINDS:
        kind = "source" if words[0] == "source" else "watchlist"
        name, duration = words[1:]
    else:
        return MUTE_USAGE
    if kind == "watchlist":
        names = {watchlist.name: watchlist.name for watchlist in settings.watchlists}
    else:
        names = {source.name: source.title for source in settings.sources}
    if name not in names:
        if len(words) == 2 and name in _KINDS:  # "/mute source NAME": no duration given
            return MUTE_USAGE
        return _fit(f"There is no {kind} named {name} (try one of: {', '.join(names)}).")
    try:
        length = parse_duration(duration)
    except ValueError as error:
        return f"Nothing changed: {error}."
    if not timedelta(minutes=1) <= length <= MAX_MUTE:
        return "Nothing changed: a mute lasts from 1m to 30d."
    until = now + length
    mute(kind, name, until)
    return (
        f"{_muted_alerts(kind, name, names[name])} will arrive silently until {format_time(until)}."
    )


def _muted_alerts(kind: MuteKind, name: str, title: str) -> str:
    """How a reply names the alerts a mute covers."""
    if kind == "watchlist":
        return f"{name} alerts"
    return f"Alerts from {title} ({name})" if title != name else f"Alerts from {name}"


def unmute_text(words: Sequence[str], unmute: Callable[[MuteKind | None, str | None], int]) -> str:
    """Parse /unmute [[watchlist|source] NAME] and end the mute(s) through ``unmute`` (kind and
    name None: every mute in the chat)."""
    if not words:
        ended = unmute(None, None)
        return "Alerts make a sound again." if ended else "Nothing was muted here."
    if len(words) == 1:
        kind: MuteKind = "watchlist"
        name = words[0]
    elif len(words) == 2 and words[0] in _KINDS:
        kind = "source" if words[0] == "source" else "watchlist"
        name = words[1]
    else:
        return UNMUTE_USAGE
    if unmute(kind, name):
        return f"{_muted_alerts(kind, name, name)} make a sound again."
    if len(words) == 1 and name in _KINDS:  # "/unmute source": a name was probably forgotten
        return f"No watchlist named {name} was muted here. {UNMUTE_USAGE}"
    return f"{kind.capitalize()} {name} was not muted here."


def _fit(text: str) -> str:
    if len(text.encode("utf-16-le")) // 2 <= _MAX_REPLY:
        return text
    cut = text[:_MAX_REPLY].rsplit("\n", 1)[0]
    return cut + "\n…"


def read_status(settings: Settings, store: Store, now: datetime, chat_id: int) -> str:
    states = {state.name: state for state in store.source_states()}
    activity = store.source_activity(now - WINDOW)
    published = {s.name: store.recent_publication_times(s.name) for s in settings.sources}
    configured = [(s.name, s.url) for s in settings.sources]
    health = source_health(configured, states, activity, published, now)
    return status_text(health, store.alert_counts(), store.active_mutes(chat_id, now))


class ChatCommands:
    """Answers the commands through python-telegram-bot's Application and Updater."""

    def __init__(
        self,
        token: str,
        api_url: str,
        *,
        settings: Callable[[], Settings],
        store: Store,
        clock: Callable[[], datetime],
        on_change: Callable[[Settings], Awaitable[None]] | None = None,
    ) -> None:
        """``settings`` is called for each command, so a reloaded configuration is seen;
        ``on_change`` receives the settings an admin command wrote (None: edits are refused)."""
        protect_token(token)  # before the Application exists: building it logs URLs
        api_url = api_url.rstrip("/")
        self._settings = settings
        self._store = store
        self._clock = clock
        self._on_change = on_change
        self._app = (
            Application.builder()
            .token(token)
            .base_url(f"{api_url}/bot")
            .base_file_url(f"{api_url}/file/bot")
            .build()
        )
        replies: dict[str, Callable[[Update], str]] = {
            "start": lambda _: help_text(),
            "help": lambda _: help_text(),
            "watchlists": lambda update: watchlists_text(self._settings(), _chat_id(update)),
            "status": lambda update: read_status(
                self._settings(), self._store, self._clock(), _chat_id(update)
            ),
            "latest": lambda update: latest_text(
                self._settings(),
                _arguments(update),
                lambda name: self._store.feed_items(name, LATEST),
            ),
            "mute": lambda update: mute_text(
                self._settings(),
                _arguments(update),
                lambda kind, name, until: self._record_mute(_chat_id(update), kind, name, until),
                self._clock(),
            ),
            "unmute": lambda update: unmute_text(
                _arguments(update),
                lambda kind, name: self._end_mutes(_chat_id(update), kind, name),
            ),
        }
        for name, reply in replies.items():
            self._app.add_handler(CommandHandler(name, _answer(reply)))
        for name in _EDITS:
            self._app.add_handler(CommandHandler(name, self._edit))
        self._app.add_handler(CommandHandler("addsource", self._add_source))
        self._app.add_handler(CallbackQueryHandler(self._mute_button, pattern=BUTTON_PATTERN))
        self._app.add_error_handler(_log_error)
        self._running = False

    async def start(self) -> bool:
        """Register the commands and start long polling; False (logged) if Telegram is
        unreachable: alerts do not depend on commands, so this is not fatal."""
        try:
            await self._app.initialize()
            await self._app.bot.set_my_commands(
                [BotCommand(name, description) for name, description in COMMANDS]
            )
            assert self._app.updater is not None
            await self._app.updater.start_polling(
                timeout=POLL_TIMEOUT, allowed_updates=["message", "callback_query"]
            )
            await self._app.start()
        except TelegramError as error:
            log.error("bot commands could not start: %s", type(error).__name__)
            await self._app.shutdown()
            return False
        self._running = True
        return True

    async def stop(self) -> None:
        """Stop polling at once (the open getUpdates is cancelled, not awaited)."""
        if not self._running:
            return
        self._running = False
        assert self._app.updater is not None
        await self._app.updater.stop()
        await self._app.stop()
        await self._app.shutdown()

    def _record_mute(self, chat_id: int, kind: MuteKind, name: str, until: datetime) -> None:
        if kind == "watchlist":
            self._store.mute(chat_id, name, until)
        else:
            self._store.mute_source(chat_id, name, until)

    def _end_mutes(self, chat_id: int, kind: MuteKind | None, name: str | None) -> int:
        """End one mute, or (kind None) every mute of the chat; how many ended."""
        ended = 0
        if kind in (None, "watchlist"):
            ended += self._store.unmute(chat_id, name)
        if kind in (None, "source"):
            ended += self._store.unmute_source(chat_id, name)
        return ended

    async def _mute_button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A "Mute ... 1h" button under an alert: mute its watchlist or source in the chat the
        alert is in, for anyone who presses it (as /mute), and say so."""
        query = update.callback_query
        if query is None or query.data is None:
            return
        target = parse_button_data(query.data)
        if target is None:
            await query.answer("This button is not understood; nothing changed.")
            return
        kind, name = target
        settings = self._settings()
        if kind == "watchlist":
            names = {watchlist.name: watchlist.name for watchlist in settings.watchlists}
        else:
            names = {source.name: source.title for source in settings.sources}
        if name not in names:
            await query.answer(f"There is no {kind} named {name} any more.")
            return
        until = self._clock() + MUTE_BUTTON
        await asyncio.to_thread(self._record_mute, _chat_id(update), kind, name, until)
        alerts = _muted_alerts(kind, name, names[name])
        await query.answer(f"{alerts} arrive silently until {format_time(until)}.")

    async def _edit(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        user = update.effective_user
        if message is None or message.text is None:
            return
        reply = await self._apply_edit(
            message.text, user.id if user else None, _chat_id(update), message.message_thread_id
        )
        await message.reply_text(reply, do_quote=False)

    async def _add_source(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """/addsource (bot.source_commands), for admins only, like the watchlist edits."""
        message = update.effective_message
        user = update.effective_user
        if message is None or message.text is None:
            return
        settings = self._settings()
        if user is None or user.id not in settings.telegram.admins:
            reply = REFUSAL
        elif self._on_change is None:
            reply = "Changing the configuration from chat is not available in this run."
        else:
            reply = await add_source_text(settings, message.text.split()[1:])
            log.info("chat command /addsource by user %s: %s", user.id, reply)
        await message.reply_text(_fit(reply), do_quote=False)

    async def _apply_edit(
        self, text: str, user_id: int | None, chat_id: int, thread_id: int | None
    ) -> str:
        """Check the user, edit the file, apply the result; the reply says how it went."""
        settings = self._settings()
        if user_id is None or user_id not in settings.telegram.admins:
            return REFUSAL
        if self._on_change is None:
            return "Changing watchlists from chat is not available in this run."
        name, *words = text.split()
        command = name.lstrip("/").split("@", 1)[0]
        edit = _EDITS[command]
        needs_term = command in ("add", "remove")
        if len(words) < (2 if needs_term else 1):
            usage = dict(COMMANDS)[command].split(":", 1)[0]
            return f"Usage: /{command} {usage}"
        watchlist, term = words[0], " ".join(words[1:])
        argument: str | int | None = term if needs_term else chat_id
        try:
            changed = await asyncio.to_thread(edit, settings.path, watchlist, argument, thread_id)
        except ConfigEditError as error:
            return f"Nothing changed: {error}."
        except SettingsError as error:
            reasons = "; ".join(problem.message for problem in error.problems)
            return f"Nothing changed: the configuration would be invalid ({reasons})."
        await self._on_change(changed)
        done = {
            "add": f'{watchlist} now also watches "{term}".',
            "remove": f'{watchlist} no longer watches "{term}".',
            "subscribe": f"{watchlist} alerts now come here.",
            "unsubscribe": f"{watchlist} alerts no longer come here.",
        }
        log.info("chat command /%s %s by user %s", command, " ".join(words), user_id)
        return done[command]


_EDITS: dict[str, Callable[[Path, str, Any, int | None], Settings]] = {
    "add": lambda path, watchlist, term, _thread: add_term(path, watchlist, term),
    "remove": lambda path, watchlist, term, _thread: remove_term(path, watchlist, term),
    "subscribe": lambda path, watchlist, chat, thread: subscribe(path, watchlist, chat, thread),
    "unsubscribe": lambda path, watchlist, chat, thread: unsubscribe(path, watchlist, chat, thread),
}


def _arguments(update: Update) -> list[str]:
    message = update.effective_message
    return (message.text or "").split()[1:] if message else []


def _chat_id(update: Update) -> int:
    return update.effective_chat.id if update.effective_chat else 0


def _answer(
    reply: Callable[[Update], str],
) -> Callable[[Update, ContextTypes.DEFAULT_TYPE], Coroutine[Any, Any, None]]:
    async def handler(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message is None:
            return
        await update.effective_message.reply_text(reply(update), do_quote=False)

    return handler


async def _log_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """PTB's errors may quote a request URL, token included, and this logger is not among those
    bot.telegram's filter covers: the text is redacted here (no traceback, which could too)."""
    log.warning("a command failed: %s", redact_tokens(str(context.error)))
