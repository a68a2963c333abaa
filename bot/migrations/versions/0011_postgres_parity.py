"""Outbox claims for many workers (issue #8): chat leases, and who claimed an alert in flight.

- ``chat_leases``: one row per chat the outbox ever delivered to; the worker named in ``owner``
  may send to that chat until ``expires_at`` (bot.outbox_claims). ``recent_sends`` keeps the
  last minute of sends to the chat (JSON), so a worker taking the chat over starts with the
  chat's rate limits where the previous holder left them.
- ``outbox.claimed_by``: the worker that moved an alert to ``sending`` (for people reading the
  outbox: which process was sending when it stopped).

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.
Batch mode for the outbox column, as SQLite needs for table changes.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "chat_leases",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("owner", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recent_sends", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name="pk_chat_leases"),
    )
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("claimed_by", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("chat_leases")
