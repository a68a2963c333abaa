"""Telegram's flood limits, enforced on our side so that Telegram never has to enforce them.

Telegram documents three limits for bots: about one message per second to one chat, 20 messages
per minute to one group, and about 30 messages per second overall; exceeding them earns a 429
with ``retry_after``, which can lock a chat for a long time. python-telegram-bot's AIORateLimiter
does not enforce the per-chat limit, and its retry loop would hide a 429 from the outbox, so the
limits are kept here, by hand, as sliding windows.

``RateLimits`` is pure bookkeeping on a clock the caller passes (tested with tables of times, no
sleeping); ``Throttle`` is the asyncio side that sleeps until the bookkeeping says yes.

Telegram counts a message when it arrives, not when we sent it, and two requests can arrive
closer together than they left (a slow first connection, a busy server). So every window is
padded by a margin, and the overall limit is kept as an even pace (one message every
1.05/30 s) rather than bursts of 30: the arrivals of one burst spread out while those of the next
may not, and a sliding window then sees 31 in a second. An even pace needs a jitter of several
intervals to break the limit; a burst needs almost none. The pace costs about 5% against the
theoretical minimum (bench/deliver measures it).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    """Telegram's limits; the defaults are the documented ones."""

    per_chat: int = 1
    per_chat_window: float = 1.0
    per_group: int = 20
    per_group_window: float = 60.0
    overall: int = 30
    overall_window: float = 1.0
    chat_margin: float = 0.25
    """Seconds added to the per-chat window: rarely the bottleneck, so it can be generous."""
    group_margin: float = 1.0
    overall_margin: float = 0.05
    """Added to the overall window before it is turned into a pace; this one costs throughput."""


def is_group(chat_id: int) -> bool:
    """Groups, supergroups and channels have negative ids; users and bots positive ones."""
    return chat_id < 0


class _Window:
    """At most ``count`` events in any ``length`` seconds."""

    __slots__ = ("count", "events", "length")

    def __init__(self, count: int, length: float) -> None:
        self.count = count
        self.length = length
        self.events: deque[float] = deque()

    def wait(self, now: float) -> float:
        """Seconds from ``now`` until one more event fits (0: it fits now)."""
        while self.events and self.events[0] <= now - self.length:
            self.events.popleft()
        if len(self.events) < self.count:
            return 0.0
        return self.events[len(self.events) - self.count] + self.length - now

    def add(self, now: float) -> None:
        self.events.append(now)

    def remove(self, moment: float) -> None:
        """Forget one event at ``moment`` (a message Telegram refused, so did not count)."""
        with contextlib.suppress(ValueError):  # already out of the window
            self.events.remove(moment)

    def insert(self, moment: float) -> None:
        """Count an event at ``moment``, which may be earlier than events already counted."""
        bisect.insort(self.events, moment)

    def move_last(self, now: float) -> None:
        """Move the latest event to ``now`` (never earlier), keeping the window sorted."""
        if self.events and self.events[-1] < now:
            self.events[-1] = now


class RateLimits:
    """The bookkeeping: may a message go to this chat at this moment, and if not, how long until.

    ``hold(chat, until)`` records a 429's ``retry_after`` for that chat only: the other chats go on.
    """

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._overall = _Window(1, (limits.overall_window + limits.overall_margin) / limits.overall)
        self._chats: dict[int, _Window] = {}
        self._groups: dict[int, _Window] = {}
        self._held: dict[int, float] = {}
        self._last: dict[int, tuple[float, float]] = {}
        """The latest message booked for each chat: its slot in the overall pace, and its moment
        in the chat's own windows (moved by restamp); refund needs both."""

    def _chat(self, chat_id: int) -> _Window:
        window = self._chats.get(chat_id)
        if window is None:
            limits = self.limits
            window = _Window(limits.per_chat, limits.per_chat_window + limits.chat_margin)
            self._chats[chat_id] = window
        return window

    def _group(self, chat_id: int) -> _Window:
        window = self._groups.get(chat_id)
        if window is None:
            limits = self.limits
            window = _Window(limits.per_group, limits.per_group_window + limits.group_margin)
            self._groups[chat_id] = window
        return window

    def wait(self, chat_id: int, now: float) -> float:
        """Seconds from ``now`` before a message to ``chat_id`` is within every limit."""
        return max(self.chat_wait(chat_id, now), self.overall_wait(now))

    def chat_wait(self, chat_id: int, now: float) -> float:
        """Seconds before ``chat_id``'s own limits (and any retry_after) allow a message."""
        waits = [self._held.get(chat_id, now) - now, self._chat(chat_id).wait(now)]
        if is_group(chat_id):
            waits.append(self._group(chat_id).wait(now))
        return max(0.0, *waits)

    def overall_wait(self, now: float) -> float:
        """Seconds before the overall pace allows the next message, to any chat."""
        return max(0.0, self._overall.wait(now))

    def record(self, chat_id: int, now: float) -> None:
        """Count a message to ``chat_id`` sent at ``now``."""
        slot = now
        overall = self._overall
        if overall.events:
            # A sender that woke a little late (the loop was busy) takes the slot it was due,
            # so that delays do not add up into a slower pace; after an idle gap, no catching up.
            due = overall.events[-1] + overall.length
            if due <= now < due + overall.length:
                slot = due
        self._chat(chat_id).add(now)
        overall.add(slot)
        if is_group(chat_id):
            self._group(chat_id).add(now)
        self._last[chat_id] = (slot, now)

    def restamp(self, chat_id: int, now: float) -> None:
        """Move the message just recorded for ``chat_id`` to ``now``, when it really leaves.

        Work between booking a slot and sending (a database commit, whose time varies) would
        otherwise let two messages to one chat arrive closer together than they were booked.
        The overall pace keeps its booked slots: moving them would add every delay to the next
        slot (the pace would drift slower), and departures stay within one slot of their
        bookings, which the pace's margin absorbs. Only valid right after ``record`` for this
        chat, with no other booking for it in between.
        """
        self._chat(chat_id).move_last(now)
        if is_group(chat_id):
            self._group(chat_id).move_last(now)
        slot, moment = self._last.get(chat_id, (now, now))
        self._last[chat_id] = (slot, max(now, moment))

    def refund(self, chat_id: int) -> None:
        """Forget the latest message booked for ``chat_id``: Telegram refused it with a 429.

        Telegram does not deliver a refused message, and (as far as its answers show) does not
        count it; keeping it would make a group that met one 429 wait a whole extra minute.
        """
        booked = self._last.pop(chat_id, None)
        if booked is None:
            return
        slot, moment = booked
        self._chat(chat_id).remove(moment)
        self._overall.remove(slot)
        if is_group(chat_id):
            self._group(chat_id).remove(moment)

    def seed(self, chat_id: int, moments: Iterable[float]) -> None:
        """Count messages another worker sent to ``chat_id`` at ``moments`` (on this clock), so
        that taking a chat over keeps its per-chat and per-group limits (bot.outbox_claims)."""
        for moment in moments:
            self._chat(chat_id).insert(moment)
            if is_group(chat_id):
                self._group(chat_id).insert(moment)

    def hold(self, chat_id: int, until: float) -> None:
        """Send nothing to ``chat_id`` before ``until`` (Telegram's retry_after)."""
        self._held[chat_id] = max(until, self._held.get(chat_id, until))


class Throttle:
    """Waits for a slot in ``RateLimits`` and takes it.

    A sender first waits until its own chat may receive a message, then queues for the overall
    pace. The queue is first come, first served (asyncio.Lock wakes waiters in order): if every
    waiter raced for each slot, the luckiest chats would get most of them and the unlucky ones
    would finish late, bound by their per-chat limit at the end, instead of all chats moving
    together. The final check and the booking happen with no await in between, so senders on one
    event loop can never book the same slot twice.
    """

    def __init__(
        self,
        limits: Limits = Limits(),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.limits = RateLimits(limits)
        self._clock = clock
        self._sleep = sleep
        self._pace = asyncio.Lock()

    def now(self) -> float:
        return self._clock()

    async def sleep(self, seconds: float) -> None:
        """Sleep on this throttle's clock (tests pass a fake clock and sleep together)."""
        await self._sleep(seconds)

    async def acquire(self, chat_id: int) -> None:
        """Return once a message to ``chat_id`` may go now, having counted it."""
        while True:
            delay = self.limits.chat_wait(chat_id, self._clock())
            if delay > 0:
                await self._sleep(delay)
                continue
            async with self._pace:
                while (delay := self.limits.overall_wait(self._clock())) > 0:
                    await self._sleep(delay)
                now = self._clock()
                if self.limits.chat_wait(chat_id, now) <= 0:  # no retry_after arrived meanwhile
                    self.limits.record(chat_id, now)
                    return

    def seed(self, chat_id: int, ages: Iterable[float]) -> None:
        """Count messages other workers sent to ``chat_id`` this many seconds ago."""
        now = self._clock()
        self.limits.seed(chat_id, [now - age for age in ages])

    def leaving(self, chat_id: int) -> None:
        """Call just before the request for the slot ``acquire`` gave, with no await between:
        the booking moves to this moment (see RateLimits.restamp)."""
        self.limits.restamp(chat_id, self._clock())

    def hold(self, chat_id: int, seconds: float) -> None:
        """Telegram refused the last message with retry_after: nothing more to ``chat_id`` for
        ``seconds``, and the refused message does not count against the limits."""
        self.limits.refund(chat_id)
        self.limits.hold(chat_id, self._clock() + seconds)
