"""The publication gap of each source, kept between polls.

``sources.publish_gap_seconds``: the median gap between the source's recent items, in seconds,
as of its last poll that fetched the feed (0: fewer than three dated items, so no rhythm; null:
not known yet). A poll answered 304 reads it with the source's row instead of reading the
source's recent articles again: the gap changes only when the feed does (bot.ingest).

Written by hand with plain types, like 0001. Batch mode, as SQLite needs for table changes.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.add_column(sa.Column("publish_gap_seconds", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("publish_gap_seconds")
