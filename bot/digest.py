"""Digests: which of a chat's pending alerts go now, singly or together, and how a digest reads.

Two pure steps, apart from the outbox and Telegram (bot.delivery does the I/O):

- ``plan_chat`` sorts one chat's pending alerts into singles to send now, alerts due in a digest
  now, and the time the next held one becomes due; and applies the **burst rule**:

  * a chat whose backlog of alerts ready to go singly reaches ``BurstRule.threshold`` is switched
    to burst digests: that backlog goes at once as one digest, whose first line says why and
    until when; the switch is stored (``chat_states.burst_since``) so a restart keeps it;
  * while the burst lasts, alerts that would go singly wait and go together every
    ``BurstRule.every`` (each digest says so again);
  * when an interval brings fewer than ``threshold`` alerts, they go in a last digest that says
    the burst is over, and the chat gets single alerts again (an interval that brought none ends
    the burst without a message).

- ``compose_digest`` writes the messages: each item is the headline linked to the article, the
  outlet, time and watchlist, and "also reported by" when other outlets carry the story. Items
  are never split: a message holds as many whole items as fit in Telegram's 4096 visible
  characters, so a cut never lands inside a tag or an entity. Every string is escaped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from .rhythm import Rhythm, release
from .store import PendingAlert
from .telegram import (
    MAX_MESSAGE_LENGTH,
    _clip,
    _escape,
    _escape_attribute,
    _is_linkable,
    _one_line,
    _utf16_length,
    format_time,
    html_to_plain,
)

_MAX_TITLE = 300
_MAX_LABEL = 100
_MAX_OTHERS = 200
_HEADER_ROOM = 400
"""Visible characters kept free in every message for the header and a burst line."""


@dataclass(frozen=True, slots=True)
class BurstRule:
    """When a chat counts as flooded, and how often it gets digests meanwhile."""

    threshold: int = 10
    every: timedelta = timedelta(minutes=15)


BurstStep = Literal["none", "start", "continue", "end"]


@dataclass(frozen=True, slots=True)
class ChatPlan:
    singles: list[PendingAlert] = field(default_factory=list)
    """To send one by one now, oldest first."""
    digest: list[PendingAlert] = field(default_factory=list)
    """Due in a digest now, oldest first."""
    next_due: datetime | None = None
    """When the earliest held alert becomes due (None: nothing held)."""
    burst: BurstStep = "none"
    """start: switch the chat to burst digests now; continue: a burst digest is due now (the
    burst goes on); end: send the last burst digest, then switch back to single alerts."""


def plan_chat(
    alerts: Sequence[PendingAlert],
    rhythm_of: Callable[[PendingAlert], Rhythm],
    burst_since: datetime | None,
    rule: BurstRule | None,
    now: datetime,
) -> ChatPlan:
    """Decide one chat's round from its pending alerts (oldest first) and burst state.

    ``rule`` None: no burst rule (a burst already stored still ends by the default rule)."""
    singles: list[PendingAlert] = []
    digest: list[PendingAlert] = []
    next_due: datetime | None = None
    for alert in alerts:
        queued = alert.created_at or now
        decision = release(rhythm_of(alert), queued, now)
        if decision.kind == "single":
            singles.append(alert)
        elif decision.at <= now:
            digest.append(alert)
        else:
            next_due = decision.at if next_due is None else min(next_due, decision.at)
    step: BurstStep = "none"
    if rule is None and burst_since is None:
        return ChatPlan(singles, digest, next_due, step)
    rule = rule or BurstRule()
    if burst_since is None:
        if len(singles) >= rule.threshold:
            digest, singles, step = _merged(digest, singles), [], "start"
    else:
        interval_end = burst_since + rule.every
        if now < interval_end:
            # Inside the interval: only what was queued before it began is due (the backlog
            # that started the burst, if its digest has not gone yet); the rest waits.
            backlog = [a for a in singles if (a.created_at or now) <= burst_since]
            if backlog:
                digest, step = _merged(digest, backlog), "start"
            if len(backlog) < len(singles):
                next_due = interval_end if next_due is None else min(next_due, interval_end)
        elif not any((a.created_at or now) <= interval_end for a in singles):
            # The interval brought nothing: the burst ended with it, silently; what came since
            # goes as usual (the caller stores the end and plans again).
            return ChatPlan([], digest, next_due, "end")
        else:
            step = "continue" if len(singles) >= rule.threshold else "end"
            digest = _merged(digest, singles)
        singles = []
    return ChatPlan(singles, digest, next_due, step)


def _merged(first: list[PendingAlert], second: list[PendingAlert]) -> list[PendingAlert]:
    """Both lists as one, in queue order (the outbox's order: queued time, then id)."""
    return sorted([*first, *second], key=lambda a: (a.created_at is None, a.created_at, a.id))


@dataclass(frozen=True, slots=True)
class DigestItem:
    """One alert as a digest line, with the names it is shown under."""

    alert: PendingAlert
    watchlist_title: str
    source_title: str
    also_reported_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DigestPart:
    """One message of a digest and the alerts it carries (marked delivered with it)."""

    alert_ids: tuple[int, ...]
    html: str


def render_item(item: DigestItem, timezone: str) -> str:
    """One item: "• <linked headline>" then "outlet · time · watchlist", and "also reported by".

    Bounded (about 800 visible characters at most), so any item fits in a message with room to
    spare and splitting between items always works.
    """
    article = item.alert.article
    title = _clip(_one_line(article.title) or article.url or "(untitled)", _MAX_TITLE)
    if _is_linkable(article.url):
        headline = f'<a href="{_escape_attribute(article.url)}">{_escape(title)}</a>'
    else:
        headline = _escape(title)
    parts = [
        _clip(_one_line(item.source_title), _MAX_LABEL),
        format_time(article.published, timezone) if article.published is not None else "",
        _clip(_one_line(item.watchlist_title), _MAX_LABEL),
    ]
    meta = " · ".join(part for part in parts if part)
    others = _clip(_one_line(", ".join(o for o in item.also_reported_by if o.strip())), _MAX_OTHERS)
    lines = [f"• <b>{headline}</b>", f"  {_escape(meta)}"]
    if others:
        lines.append(f"  Also reported by: {_escape(others)}")
    return "\n".join(lines)


def visible_length(html_text: str) -> int:
    """What Telegram counts against the 4096 limit: the text without tags, entities decoded."""
    return _utf16_length(html_to_plain(html_text))


def compose_digest(
    items: Sequence[DigestItem],
    timezone: str,
    *,
    note: str = "",
    footer: str = "",
    limit: int = MAX_MESSAGE_LENGTH,
) -> list[DigestPart]:
    """The digest as few messages as the limit allows, items whole and in order.

    Each message starts with "Digest · N alerts" (and "part i of k" when split) and ``note``
    (the burst line); ``footer`` closes the last one. Both are plain text, escaped here.
    """
    if not items:
        return []
    note_html = _escape(_clip(_one_line(note), 200)) if note else ""
    footer_html = _escape(_clip(_one_line(footer), 200)) if footer else ""
    room = limit - _HEADER_ROOM
    groups: list[list[tuple[int, str]]] = [[]]
    used = 0
    for item in items:
        rendered = render_item(item, timezone)
        size = visible_length(rendered) + 2  # the blank line before it
        if groups[-1] and used + size > room:
            groups.append([])
            used = 0
        groups[-1].append((item.alert.id, rendered))
        used += size
    parts: list[DigestPart] = []
    for index, group in enumerate(groups, start=1):
        count = f"{len(group)} alert" + ("" if len(group) == 1 else "s")
        header = f"<b>Digest</b> · {count}"
        if len(groups) > 1:
            header += f" · part {index} of {len(groups)}"
        blocks = [header + (f"\n{note_html}" if note_html else "")]
        blocks += [rendered for _, rendered in group]
        if footer_html and index == len(groups):
            blocks.append(footer_html)
        parts.append(DigestPart(tuple(alert_id for alert_id, _ in group), "\n\n".join(blocks)))
    return parts


def burst_note(rule: BurstRule) -> str:
    minutes = int(rule.every.total_seconds() // 60)
    every = f"{minutes} min" if minutes < 60 else f"{minutes // 60} h{minutes % 60 or ''}"
    return (
        f"Burst of news: this chat now gets its alerts together every {every} until it calms down."
    )


BURST_OVER = "The burst is over: alerts come one by one again."


def digest_items(
    alerts: Sequence[PendingAlert],
    watchlist_titles: Mapping[str, str],
    source_titles: Mapping[str, str],
    others: Mapping[int, Sequence[str]],
) -> list[DigestItem]:
    """The display names for each alert (titles fall back to the configured names)."""
    return [
        DigestItem(
            alert,
            watchlist_titles.get(alert.watchlist, alert.watchlist),
            source_titles.get(alert.article.source, alert.article.source),
            tuple(source_titles.get(name, name) for name in others.get(alert.article.id, ())),
        )
        for alert in alerts
    ]
