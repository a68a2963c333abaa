"""Source mutes: the sources (outlets) a chat muted for a while, next to its watchlist mutes.

A separate table rather than a "kind" column on ``mutes``: adding a kind to that table's primary
key would mean rebuilding it on SQLite, and the two kinds never need to be read as one list.

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "source_mutes",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "source", name="pk_source_mutes"),
    )


def downgrade() -> None:
    op.drop_table("source_mutes")
