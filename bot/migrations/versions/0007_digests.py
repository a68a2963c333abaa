"""Digests and bursts: when a chat was switched to digests because of a burst of news.

The rest of digest delivery needs no new state: which alerts a digest covers is decided from the
route and each alert's queue time (bot.rhythm), and each alert's own status in the outbox is what
makes it go out once.

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "chat_states", sa.Column("burst_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    with op.batch_alter_table("chat_states") as batch:
        batch.drop_column("burst_since")
