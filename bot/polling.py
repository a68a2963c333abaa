"""Settings → the polling machinery: a source's job (cadence, listing selectors) and the shared
politeness of every request (host gate, robots.txt). Kept apart from bot.app so the wiring of
ingestion lives in one short place."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from itertools import zip_longest

import httpx
from sqlalchemy import Engine

from feeds.cadence import Cadence
from feeds.fetch import DEFAULT_USER_AGENT, FetchLimits
from feeds.listing import ListingSelectors
from feeds.netguard import AddressPolicy
from feeds.politeness import RequestGate, host_of
from feeds.robots import RobotsCache

from .fleet import request_gate
from .ingest import SourceJob
from .settings import Settings, SourceSettings


def job_for(
    source: SourceSettings,
    backoff_cap: timedelta = timedelta(hours=6),
    allow_private: bool = False,
) -> SourceJob:
    """The slice of a source's settings that a poll needs, with the addresses it may reach."""
    cadence = Cadence(
        every=source.every,
        min_every=source.shortest_interval,
        max_every=source.longest_interval,
        backoff_cap=backoff_cap,
    )
    listing = None
    if source.selectors is not None:
        listing = ListingSelectors(
            links=source.selectors.links,
            title=source.selectors.title,
            date=source.selectors.date,
        )
    policy = AddressPolicy.for_source(
        source.url, added_from_chat=source.added_from_chat, allow_private=allow_private
    )
    return SourceJob(source.name, source.url, source.full_text, cadence, listing, policy)


def polite_fetching(
    settings: Settings,
    client: httpx.AsyncClient,
    limits: FetchLimits,
    engine: Engine | None = None,
    owner: str = "",
) -> tuple[RequestGate, RobotsCache | None]:
    """The one host gate every request of this process goes through (shared with the fleet
    through `engine` when it is PostgreSQL, see bot.fleet), and the robots.txt cache (None when
    `fetch.robots` is off)."""
    gate = request_gate(settings, engine, owner)
    robots = None
    if settings.fetch.robots:
        user_agent = settings.fetch.user_agent or DEFAULT_USER_AGENT
        robots = RobotsCache(client, user_agent, limits=limits, gate=gate)
    return gate, robots


def spread_by_host(jobs: Sequence[SourceJob]) -> list[int]:
    """The indexes of `jobs` in round-robin order of their hosts: the first job of each host (in
    order of first appearance), then the second of each, and so on."""
    by_host: dict[str, list[int]] = {}
    for index, job in enumerate(jobs):
        by_host.setdefault(host_of(job.url), []).append(index)
    return [
        index for round_ in zip_longest(*by_host.values()) for index in round_ if index is not None
    ]
