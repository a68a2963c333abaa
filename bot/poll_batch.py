"""Polls answered 304, written to the store together instead of one transaction each.

A re-poll of an unchanged feed changes nothing but the source's bookkeeping (when it was polled,
its validators, when it is due again, the 304 count). In steady state that is nearly every poll,
and one committed transaction each (a write and an fsync of SQLite's log) cost more than the
conditional GET itself: a round of polls keeps these records in a `NotModifiedBatch` and writes
them in one transaction when the round ends.

Nothing is lost if the process dies before the write: the feed did not change, so the next
poll sends the same validators and gets the same 304; only the counters miss those polls.
Polls that stored articles or failed are still written at once, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from feeds.models import ConditionalHeaders


@dataclass(frozen=True, slots=True)
class NotModifiedPoll:
    """What `Store.record_poll_success(..., not_modified=True)` would have written."""

    name: str
    url: str
    validators: ConditionalHeaders
    at: datetime
    fetch_url: str | None
    next_poll_at: datetime | None
    publish_gap_seconds: float | None = None
    """The source's publication gap, when the poll had to work it out (None: unchanged)."""


@dataclass(slots=True)
class NotModifiedBatch:
    """The 304 polls of one round, until `Store.record_not_modified_polls` writes them."""

    polls: list[NotModifiedPoll] = field(default_factory=list)

    def add(self, poll: NotModifiedPoll) -> None:
        self.polls.append(poll)

    def take(self) -> list[NotModifiedPoll]:
        """The polls gathered so far, and an empty batch from now on."""
        taken, self.polls = self.polls, []
        return taken
