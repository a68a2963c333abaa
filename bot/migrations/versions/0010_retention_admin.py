"""Retention and admin alerts (issue #9).

- ``feed_archive_starts``: per feed document, how many entries retention removed from the front
  of its history, so archive pages keep their numbering and contents after a prune (bot.retention).
- ``pruned_articles``: what a source's pruned articles were called (guid, URL key), so a feed that
  still lists an old entry does not bring it back as new (bot.retention).
- ``admin_reports``: per admin-alert condition, since when it holds, whether it is reported as
  active and when it was last reported, so a restart neither repeats nor forgets a report
  (bot.admin_alerts).
- an index on ``articles.updated_at``, which the retention sweep selects by, and one on
  ``outbox.article_id``: without it every deleted article makes SQLite scan the whole outbox for
  rows referencing it (the foreign key), which made a prune of 14,000 articles take minutes;
- ``chat_states.folded_alerts``: alerts folded out of a chat's overflowing queue since its last
  digest, which that digest then reports (bot.outbox_bound).

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "feed_archive_starts",
        sa.Column("feed", sa.Text(), nullable=False),
        sa.Column("pruned_entries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("feed", name="pk_feed_archive_starts"),
    )
    op.create_table(
        "pruned_articles",
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("guid", sa.Text(), nullable=False),
        sa.Column("url_key", sa.Text(), nullable=True),
        sa.Column("seen_at", _AWARE, nullable=False),
        sa.PrimaryKeyConstraint("source", "guid", name="pk_pruned_articles"),
    )
    op.create_index("ix_pruned_articles_source_url_key", "pruned_articles", ["source", "url_key"])
    op.create_index("ix_pruned_articles_seen_at", "pruned_articles", ["seen_at"])
    op.create_table(
        "admin_reports",
        sa.Column("condition", sa.Text(), nullable=False),
        sa.Column("active", sa.Integer(), nullable=False),
        sa.Column("since", _AWARE, nullable=True),
        sa.Column("reported_at", _AWARE, nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("condition", name="pk_admin_reports"),
    )
    op.create_index("ix_articles_updated_at", "articles", ["updated_at"])
    op.create_index("ix_outbox_article_id", "outbox", ["article_id"])
    op.add_column(
        "chat_states",
        sa.Column("folded_alerts", sa.Integer(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    with op.batch_alter_table("chat_states") as batch:
        batch.drop_column("folded_alerts")
    op.drop_index("ix_outbox_article_id", table_name="outbox")
    op.drop_index("ix_articles_updated_at", table_name="articles")
    op.drop_table("admin_reports")
    op.drop_index("ix_pruned_articles_seen_at", table_name="pruned_articles")
    op.drop_index("ix_pruned_articles_source_url_key", table_name="pruned_articles")
    op.drop_table("pruned_articles")
    op.drop_table("feed_archive_starts")
