"""/addsource URL [NAME]: an admin adds a news source from chat.

The same discovery as `wirewatch add` (feeds.discover: the page's declared feeds, else common
paths), the first feed found is appended to the YAML through bot.source_config (comments kept,
validated, atomic, under the configuration's lock), marked ``added_from_chat: true``.

A URL typed in a chat is not the administrator's YAML: a compromised admin account, or a pasted
link, must not make the bot probe the machine's own network. So discovery, and every later poll
of the source, obey feeds.netguard with no trusted host: the page, its redirects, the feed it
declares and (later) its article links must all be public addresses unless
``fetch.allow_private_addresses`` is on.

Sources are read at start-up only (bot.reload applies watchlists live, and reports other
sections as needing a restart), so the reply says the source is polled from the next restart.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from urllib.parse import urlsplit

from feeds.discover import discover_feeds
from feeds.errors import FetchError
from feeds.fetch import DEFAULT_USER_AGENT, FetchLimits, make_client
from feeds.netguard import AddressPolicy, BlockedAddress, Resolver, check_url, system_resolver

from .settings import Settings, SettingsError
from .source_config import NewSource, add_sources

__all__ = ["ADD_SOURCE_USAGE", "add_source_text"]

ADD_SOURCE_USAGE = "Usage: /addsource URL [NAME] (a site's home page or a feed URL)"


async def add_source_text(
    settings: Settings, words: Sequence[str], resolver: Resolver = system_resolver
) -> str:
    """Discover the feed at ``words[0]``, add it as ``words[1]`` (or a name from its title) and
    say what happened; nothing is written unless a feed was found and may be polled."""
    if not 1 <= len(words) <= 2:
        return ADD_SOURCE_USAGE
    url = words[0]
    name = words[1] if len(words) == 2 else ""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"Nothing changed: {url} is not an http:// or https:// URL."
    policy = AddressPolicy(settings.fetch.allow_private_addresses, resolver=resolver)
    limits = FetchLimits(
        total_timeout=settings.fetch.timeout.total_seconds(), max_bytes=settings.fetch.max_bytes
    )
    try:
        async with make_client(settings.fetch.user_agent or DEFAULT_USER_AGENT, limits) as client:
            found = await discover_feeds(client, url, limits=limits, policy=policy)
        if not found:
            return (
                f"Nothing changed: no feed found at {url} (neither declared nor at common paths)."
            )
        chosen = found[0]
        await check_url(chosen.url, policy)
    except FetchError as error:
        return f"Nothing changed: {url}: {error.message}."
    except BlockedAddress as error:
        return f"Nothing changed: the feed {error.url}: {error}."
    except OSError as error:
        return f"Nothing changed: the feed's host does not resolve ({error})."
    new = NewSource(chosen.url, chosen.title, name, from_chat=True)
    try:
        added = await asyncio.to_thread(add_sources, settings.path, [new])
    except SettingsError as error:
        reasons = "; ".join(problem.message for problem in error.problems)
        return f"Nothing changed: the configuration would be invalid ({reasons})."
    if not added:
        return f"Nothing changed: {chosen.url} is already a source."
    return (
        f"Added source {added[0]}: {chosen.url}. It is polled from the next restart "
        "(sources are read at start-up)."
    )
