"""Stories: which articles are copies of one story (near-duplicates, feeds.stories).

One row per article that went through story detection: the story it belongs to (the id of the
story's first article) and its fingerprint, kept so later articles can be compared with it; and
in `story_keys` the few smallest shingle hashes of each article, an index that finds the articles
worth comparing without reading every recent fingerprint. Separate tables rather than columns on
`articles`, so the articles table needs no rebuild.

Written by hand with plain types, like 0001, so later edits to bot.schema cannot change what this
revision did.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_AWARE = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "article_stories",
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.Text(), nullable=False),
        sa.Column("created_at", _AWARE, nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_article_stories_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("article_id", name="pk_article_stories"),
    )
    op.create_index("ix_article_stories_story_id", "article_stories", ["story_id"])
    op.create_index("ix_article_stories_created_at", "article_stories", ["created_at"])
    op.create_table(
        "story_keys",
        sa.Column("key", sa.BigInteger(), nullable=False),
        sa.Column("article_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["article_id"],
            ["articles.id"],
            name="fk_story_keys_article_id_articles",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("key", "article_id", name="pk_story_keys"),
    )
    op.create_index("ix_story_keys_article_id", "story_keys", ["article_id"])


def downgrade() -> None:
    op.drop_index("ix_story_keys_article_id", table_name="story_keys")
    op.drop_table("story_keys")
    op.drop_index("ix_article_stories_created_at", table_name="article_stories")
    op.drop_index("ix_article_stories_story_id", table_name="article_stories")
    op.drop_table("article_stories")
