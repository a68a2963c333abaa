"""Reading and writing the learned site templates (feeds.templates) in the store's tables.

Kept out of bot.store so that the store stays about sources, articles and alerts; `Store` calls
these with its own connection, one transaction per call.
"""

from __future__ import annotations

from collections.abc import Collection
from types import MappingProxyType

from sqlalchemy import Connection, Table, and_, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from bot.schema import site_blocks, site_templates
from feeds.templates import BlockStat, SiteTemplate, learn

_DELETE_CHUNK = 400
"""Bound on parameters per IN (...) so old SQLite builds (999 variables) are safe too."""


def _insert(connection: Connection, table: Table) -> sqlite.Insert | postgresql.Insert:
    """The dialect's INSERT, which has ON CONFLICT (as bot.store does it)."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def load_site_template(connection: Connection, site: str) -> SiteTemplate:
    """The site's template as stored (an empty one for a site never seen)."""
    pages = connection.scalar(select(site_templates.c.pages).where(site_templates.c.site == site))
    if not pages:
        return SiteTemplate(site)
    rows = connection.execute(
        select(
            site_blocks.c.fingerprint,
            site_blocks.c.weight,
            site_blocks.c.last_page,
            site_blocks.c.sightings,
        ).where(site_blocks.c.site == site)
    ).all()
    blocks = {key: BlockStat(weight, last, seen) for key, weight, last, seen in rows}
    return SiteTemplate(site, int(pages), MappingProxyType(blocks))


def learn_site_page(
    connection: Connection, site: str, fingerprints: Collection[str]
) -> SiteTemplate:
    """Count one more page of `site` holding these blocks; returns the updated template.

    The page counter is bumped first, so the transaction starts with a write (see bot.store on
    SQLite's deferred BEGIN), and two workers learning pages of one site at once each get their
    own page number.
    """
    statement = _insert(connection, site_templates).values(site=site, pages=1)
    connection.execute(
        statement.on_conflict_do_update(
            index_elements=[site_templates.c.site],
            set_={"pages": site_templates.c.pages + 1},
        )
    )
    current = load_site_template(connection, site)
    before = SiteTemplate(site, current.pages - 1, current.blocks)
    learned = learn(before, fingerprints)
    forgotten = sorted(learned.forgotten)
    for start in range(0, len(forgotten), _DELETE_CHUNK):
        chunk = forgotten[start : start + _DELETE_CHUNK]
        connection.execute(
            delete(site_blocks).where(
                and_(site_blocks.c.site == site, site_blocks.c.fingerprint.in_(chunk))
            )
        )
    if learned.updated:
        rows = [
            {
                "site": site,
                "fingerprint": key,
                "weight": stat.weight,
                "last_page": stat.last_page,
                "sightings": stat.sightings,
            }
            for key, stat in learned.updated.items()
        ]
        upsert = _insert(connection, site_blocks)
        connection.execute(
            upsert.on_conflict_do_update(
                index_elements=[site_blocks.c.site, site_blocks.c.fingerprint],
                set_={
                    "weight": upsert.excluded.weight,
                    "last_page": upsert.excluded.last_page,
                    "sightings": upsert.excluded.sightings,
                },
            ),
            rows,
        )
    return learned.template
