"""Mutes: what a chat has silenced for a while, and the callback data of the mute buttons.

A chat can mute a watchlist or a source (an outlet). Either way the alerts it covers still reach
the chat, in order, only without a notification sound (Telegram's disable_notification) until the
mute ends: a mute never drops or holds back an alert. A single alert is silent when its watchlist
or its source is muted in that chat; a digest is silent when every alert it carries is.

The buttons under an alert carry their target in Telegram's callback data, which is at most 64
bytes and comes back from anyone who can press it, so it is parsed strictly here: a prefix naming
the kind, then the name, which must be a slug (the only names bot.settings accepts, and they never
contain ":", so the format cannot be ambiguous). "mute:NAME" is kept for watchlists because alerts
already in chats carry it; sources use "mutesrc:NAME".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

MuteKind = Literal["watchlist", "source"]

MAX_CALLBACK_DATA = 64
"""Telegram's limit for a button's callback data, in bytes."""
_PREFIXES: dict[MuteKind, str] = {"watchlist": "mute:", "source": "mutesrc:"}
BUTTON_PATTERN = r"^mute(?:src)?:"
"""Which callback queries are mute buttons (for python-telegram-bot's CallbackQueryHandler)."""
_SLUG = re.compile(r"[a-z0-9][a-z0-9_-]*")  # the names bot.settings accepts


def button_data(kind: MuteKind, name: str) -> str | None:
    """The callback data of the button muting ``name``; None when it cannot have one (a name
    that is not a slug, or too long for Telegram's 64 bytes)."""
    data = _PREFIXES[kind] + name
    if not _SLUG.fullmatch(name) or len(data.encode()) > MAX_CALLBACK_DATA:
        return None
    return data


def parse_button_data(data: str) -> tuple[MuteKind, str] | None:
    """What a pressed mute button asks for; None for anything not made by ``button_data``."""
    for kind, prefix in _PREFIXES.items():
        if data.startswith(prefix):
            name = data.removeprefix(prefix)
            return (kind, name) if button_data(kind, name) == data else None
    return None


@dataclass(frozen=True, slots=True)
class Mutes:
    """The (chat, name) pairs muted at one moment, by kind."""

    watchlists: frozenset[tuple[int, str]] = field(default_factory=frozenset)
    sources: frozenset[tuple[int, str]] = field(default_factory=frozenset)

    def silences(self, chat_id: int, watchlist: str, source: str) -> bool:
        """Whether an alert of ``watchlist`` from ``source`` goes to ``chat_id`` silently."""
        return (chat_id, watchlist) in self.watchlists or (chat_id, source) in self.sources


@dataclass(frozen=True, slots=True)
class ActiveMute:
    """One mute in force in a chat (for /status)."""

    kind: MuteKind
    name: str
    until: datetime
