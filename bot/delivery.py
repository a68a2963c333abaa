"""The outbox → Telegram (or the log): send what is pending, record every outcome.

An alert is marked `sending` before the request and `sent` after it, so a crash between the two
leaves a trace: at the next start such alerts are marked `unknown` and not sent again (see
Store.recover_interrupted_alerts), which trades a possible loss in that one-request window for
never sending twice. A temporary failure leaves the alert `pending` for the next round and holds
back the rest of that chat's alerts, so a chat never receives its alerts out of order; a permanent
failure (bot blocked, chat gone, message refused) ends the alert as `failed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from .store import AlertStateError, PendingAlert, Store
from .telegram import DeliveryError, Sender, format_alert

log = logging.getLogger("wirewatch.delivery")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    """Sends that did not go through (retried later, or ended if permanent)."""
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
    held_chats: set[int] = set()
    while not should_stop():
        batch = store.pending_alerts(exclude_chats=held_chats)
        if not batch:
            break
        for alert in batch:
            if should_stop():
                break
            if alert.chat_id in held_chats:
                continue
            try:
                store.mark_alert_sending(alert.id, clock())
            except AlertStateError:  # another process took it meanwhile: it is theirs to send
                continue
            error = await _send(sender, alert, watchlist_titles, source_titles)
            if error is None:
                store.mark_alert_sent(alert.id, clock(), outcome)
                sent += 1
                continue
            store.mark_alert_failed(alert.id, str(error), clock(), permanent=error.permanent)
            failed += 1
            errors.append(f"chat {alert.chat_id}: {error}")
            if not error.permanent:
                held_chats.add(alert.chat_id)
            log.warning(
                "alert %s to chat %s not sent (%s): %s",
                alert.id,
                alert.chat_id,
                "given up" if error.permanent else "will retry",
                error,
            )
    return DeliveryReport(sent, failed, tuple(errors))


async def _send(
    sender: Sender,
    alert: PendingAlert,
    watchlist_titles: Mapping[str, str],
    source_titles: Mapping[str, str],
) -> DeliveryError | None:
    text = format_alert(
        alert,
        watchlist_titles.get(alert.watchlist, alert.watchlist),
        source_titles.get(alert.article.source, alert.article.source),
    )
    try:
        await sender.send(alert.chat_id, text)
    except DeliveryError as error:
        return error
    return None
