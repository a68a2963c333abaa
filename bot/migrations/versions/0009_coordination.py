"""Fleet coordination (issue #8): source leases, fleet-wide host politeness, a feed change counter.

- ``sources.lease_owner`` / ``lease_expires_at``: which worker is polling the source and until when
  its claim holds (bot.coordination); an index on ``next_poll_at``, which the claim selects by.
- ``host_turns``: per host, when the last request from any worker started.
- ``host_slots``: per host, ``fetch.per_host`` numbered slots claimed like leases.
- ``change_counters``: a counter bumped in every transaction that changes what the feeds show,
  which every worker watches to re-publish feeds that another worker's poll changed.

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sources", sa.Column("lease_owner", sa.Text(), nullable=True))
    op.add_column("sources", sa.Column("lease_expires_at", _AWARE, nullable=True))
    op.create_index("ix_sources_next_poll_at", "sources", ["next_poll_at"])
    op.create_table(
        "host_turns",
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("last_start", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("host", name="pk_host_turns"),
    )
    op.create_table(
        "host_slots",
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("slot", sa.Integer(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("expires_at", _AWARE, nullable=True),
        sa.PrimaryKeyConstraint("host", "slot", name="pk_host_slots"),
    )
    op.create_table(
        "change_counters",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_change_counters"),
    )


def downgrade() -> None:
    op.drop_table("change_counters")
    op.drop_table("host_slots")
    op.drop_table("host_turns")
    op.drop_index("ix_sources_next_poll_at", table_name="sources")
    with op.batch_alter_table("sources") as batch:
        batch.drop_column("lease_expires_at")
        batch.drop_column("lease_owner")
