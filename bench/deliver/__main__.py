"""Alert delivery against Telegram's flood limits: how close to the fastest the limits allow, and
how many 429s it provokes.

    .venv/bin/python -m bench.deliver [--alerts 1000] [--chats 50] [--skip-baseline]

A real outbox (SQLite in a temporary folder) holds ``--alerts`` alerts spread evenly over
``--chats`` chats, half of them private chats and half groups. They are delivered through
python-telegram-bot's HTTP stack to the fake Bot API on 127.0.0.1 (tests/support/fake_telegram.py)
with ``enforce_limits=True``: it answers 429 with retry_after to any message that breaks 1 message
per second per chat, 20 per minute per group or 30 per second overall, on arrival times. The fake
runs in its own process, as Telegram would: in this one it would compete with the sender for the
interpreter lock and stamp arrivals late by a varying amount.

Two runs on the same workload, one after the other:

- **wirewatch**: the `Deliverer` as the app uses it, with its `Throttle` (bot/ratelimit.py);
- **baseline**: the same `Deliverer` with the throttle's limits lifted, which is how the
  foundation delivered (send at once, then obey each 429's retry_after for that chat).

The minimum is the tightest of the limits' lower bounds for this workload: with sliding windows a
burst of 30 may go out at once, so N messages need floor((N - 1) / 30) seconds overall; a chat with
k alerts needs k - 1 seconds; a group with k alerts needs 60 * floor((k - 1) / 20) seconds. With
alerts spread evenly (the default) the overall bound dominates and is reachable, so it is the
real minimum. Time is measured from the start of delivery until the last alert is recorded sent.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from bot.delivery import Deliverer
from bot.ratelimit import Limits, Throttle
from bot.store import Store
from bot.telegram import TelegramSender
from feeds.models import Article, Match, TermHit

from . import serve_fake

NO_LIMITS = Limits(
    per_chat=10**6, per_group=10**6, overall=10**6, chat_margin=0, group_margin=0, overall_margin=0
)


@dataclass(frozen=True, slots=True)
class Result:
    name: str
    seconds: float
    sent: int
    too_many_requests: int


def chat_ids(count: int) -> list[int]:
    """Half private chats (positive ids), half groups (negative ids)."""
    return [(1000 + n) if n % 2 == 0 else -(1000 + n) for n in range(count)]


def workload(alerts: int, chats: int) -> dict[int, int]:
    """Alerts per chat, spread as evenly as possible."""
    ids = chat_ids(chats)
    return {chat: alerts // chats + (1 if index < alerts % chats else 0) for index, chat in
            enumerate(ids)}  # fmt: skip


def minimum_seconds(per_chat: dict[int, int], limits: Limits) -> float:
    total = sum(per_chat.values())
    bounds = [float((total - 1) // limits.overall) * limits.overall_window]
    for chat, count in per_chat.items():
        bounds.append((count - 1) / limits.per_chat * limits.per_chat_window)
        if chat < 0:
            bounds.append(((count - 1) // limits.per_group) * limits.per_group_window)
    return max(bounds)


def fill(store: Store, per_chat: dict[int, int]) -> None:
    at = datetime.now(UTC)
    rounds = max(per_chat.values())
    for number in range(rounds):
        article = Article(
            url=f"https://news.example/story/{number}",
            title=f"Story {number} about Ukraine",
            paragraphs=("Troops gathered near the Ukraine border.",),
            html="",
        )
        match = Match("w", (TermHit("ukraine", 1, ("body",)),), "Troops near the Ukraine border.")
        chats = [chat for chat, count in per_chat.items() if count > number]
        store.add_article_with_matches("bench", str(number), article, [match], {"w": chats}, at)


async def run(name: str, per_chat: dict[int, int], limits: Limits, folder: Path) -> Result:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    fake = context.Process(target=serve_fake, args=(theirs,), daemon=True)
    fake.start()
    token, base_url = ours.recv()
    with Store.open(f"sqlite:///{folder / f'{name}.sqlite3'}") as store:
        fill(store, per_chat)
        sender = TelegramSender(token, base_url, timeout=10)
        await sender.start()
        deliverer = Deliverer(
            store,
            sender,
            "sent",
            watchlist_titles={"w": "Ukraine"},
            source_titles={"bench": "Bench News"},
            clock=lambda: datetime.now(UTC),
            throttle=Throttle(limits),
        )
        started = time.monotonic()
        try:
            while store.pending_chats():
                await deliverer.deliver()
        finally:
            await sender.stop()
        seconds = time.monotonic() - started
        sent = store.alert_counts().get("sent", 0)
    ours.send("stop")
    received, too_many_requests = ours.recv()
    fake.join(timeout=10)
    if received != sent:
        raise RuntimeError(f"the fake received {received} messages, the outbox says {sent} sent")
    return Result(name, seconds, sent, too_many_requests)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.deliver", description=__doc__)
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--chats", type=int, default=50)
    parser.add_argument("--skip-baseline", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("PTB_TIMEDELTA", "1")  # PTB 22 warns on every RetryAfter otherwise
    per_chat = workload(args.alerts, args.chats)
    minimum = minimum_seconds(per_chat, Limits())
    runs = [("wirewatch", Limits())]
    if not args.skip_baseline:
        runs.append(("baseline (no throttle)", NO_LIMITS))
    with tempfile.TemporaryDirectory() as folder:
        results = [
            asyncio.run(run(name, per_chat, limits, Path(folder))) for name, limits in runs
        ]
    print(f"{args.alerts} alerts to {args.chats} chats; minimum the limits allow: {minimum:.1f} s")
    print("| run | seconds | vs minimum | sent | 429s |")
    print("| --- | --- | --- | --- | --- |")
    for result in results:
        over = (result.seconds / minimum - 1) * 100 if minimum else 0.0
        print(
            f"| {result.name} | {result.seconds:.1f} | +{over:.1f}% | {result.sent} "
            f"| {result.too_many_requests} |"
        )


if __name__ == "__main__":
    main()
