"""Source scheduling and health, and article identity beyond the guid.

sources: where polls go after a permanent redirect, the next poll, why a source is disabled, the
kind of its last error, and poll / 304 counts. articles: the canonical URL key, the entry
fingerprint and the article page's validators (see bot.schema for what each is for).

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("sources", sa.Column("fetch_url", sa.Text(), nullable=True))
    op.add_column("sources", sa.Column("next_poll_at", _AWARE, nullable=True))
    op.add_column("sources", sa.Column("disabled_reason", sa.Text(), nullable=True))
    op.add_column("sources", sa.Column("last_error_kind", sa.Text(), nullable=True))
    op.add_column("sources", sa.Column("polls", sa.Integer(), nullable=False, server_default="0"))
    op.add_column(
        "sources",
        sa.Column("not_modified_polls", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("articles", sa.Column("url_key", sa.Text(), nullable=True))
    op.add_column("articles", sa.Column("fingerprint", sa.Text(), nullable=True))
    op.add_column("articles", sa.Column("page_etag", sa.Text(), nullable=True))
    op.add_column("articles", sa.Column("page_last_modified", sa.Text(), nullable=True))
    op.create_index("ix_articles_source_url_key", "articles", ["source", "url_key"])


def downgrade() -> None:
    op.drop_index("ix_articles_source_url_key", table_name="articles")
    with op.batch_alter_table("articles") as batch:
        for column in ("page_last_modified", "page_etag", "fingerprint", "url_key"):
            batch.drop_column(column)
    with op.batch_alter_table("sources") as batch:
        for column in (
            "not_modified_polls",
            "polls",
            "last_error_kind",
            "disabled_reason",
            "next_poll_at",
            "fetch_url",
        ):
            batch.drop_column(column)
