"""A line per host for requests that wait for it (bot.fleet_gate).

``host_waiters``: one row per request of any worker that asked for a busy host and has not
started yet, with its place (its source's due time, else the instant it first asked by the
database's clock) and how long the row holds without word from its request. A host's slots and
turn go to the request with the earliest place, so no request waits behind ever newer ones when
a site's limits bind.

Written by hand with plain types, like 0001.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "host_waiters",
        sa.Column("waiter", sa.Text(), nullable=False),
        sa.Column("host", sa.Text(), nullable=False),
        sa.Column("since", _AWARE, nullable=False),
        sa.Column("expires_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("waiter", name="pk_host_waiters"),
    )
    op.create_index("ix_host_waiters_host_since", "host_waiters", ["host", "since"])


def downgrade() -> None:
    op.drop_index("ix_host_waiters_host_since", table_name="host_waiters")
    op.drop_table("host_waiters")
