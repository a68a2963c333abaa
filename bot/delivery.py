"""The outbox → Telegram (or the log): send what is pending, record every outcome.

An alert is marked `sending` before the request and `sent` after it, so a crash between the two
leaves a trace: at the next start such alerts are marked `unknown` and not sent again (see
Store.recover_interrupted_alerts), which trades a possible loss in that one-request window for
never sending twice. A failed send stays `pending` and is retried on the next delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .store import Store
from .telegram import DeliveryError, Sender, format_alert

log = logging.getLogger("wirewatch.delivery")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    errors: tuple[str, ...] = ()


async def deliver_pending(
    store: Store,
    sender: Sender,
    outcome: str,
    watchlist_titles: Mapping[str, str],
    source_titles: Mapping[str, str],
    clock: Callable[[], datetime],
    should_stop: Callable[[], bool] = lambda: False,
) -> DeliveryReport:
    """Send every pending alert once; `outcome` is what a success is recorded as (sent|logged)."""
    sent = failed = 0
    errors: list[str] = []
    # A chat that failed temporarily is not tried again in this round, keeping its order intact.
    held_chats: set[int] = set()
    while not should_stop():
        batch = [a for a in store.pending_alerts() if a.chat_id not in held_chats]
        if not batch:
            break
        for alert in batch:
            if should_stop():
                break
            if alert.chat_id in held_chats:
                continue
            text = format_alert(
                alert,
                watchlist_titles.get(alert.watchlist, alert.watchlist),
                source_titles.get(alert.article.source, alert.article.source),
            )
            store.mark_alert_sending(alert.id, clock())
            try:
                await sender.send(alert.chat_id, text)
            except DeliveryError as error:
                store.mark_alert_failed(alert.id, str(error), clock())
                failed += 1
                errors.append(f"chat {alert.chat_id}: {error}")
                held_chats.add(alert.chat_id)
                log.warning("alert %s to chat %s not sent: %s", alert.id, alert.chat_id, error)
                continue
            store.mark_alert_sent(alert.id, clock(), outcome)
            sent += 1
    return DeliveryReport(sent, failed, tuple(errors))
