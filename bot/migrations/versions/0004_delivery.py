"""Delivery state: when an alert may be retried, Telegram's message id, what we learnt about each
chat (the bot was blocked or removed, or a group became a supergroup with a new id), and the
watchlists a chat muted for a while.

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change what this
revision did. Batch mode because SQLite cannot add columns with constraints in place.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("next_attempt_at", _AWARE, nullable=True))
        batch.add_column(sa.Column("message_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "chat_states",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("migrated_to", sa.BigInteger(), nullable=True),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("updated_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name="pk_chat_states"),
    )
    op.create_table(
        "mutes",
        sa.Column("chat_id", sa.BigInteger(), nullable=False),
        sa.Column("watchlist", sa.Text(), nullable=False),
        sa.Column("until", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("chat_id", "watchlist", name="pk_mutes"),
    )


def downgrade() -> None:
    op.drop_table("mutes")
    op.drop_table("chat_states")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("message_id")
        batch.drop_column("next_attempt_at")
