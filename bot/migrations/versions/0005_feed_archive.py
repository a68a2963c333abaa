"""Reserved for the Atom work (entry updates, archive paging); that work needed no schema change.

Entry updates use the articles' own `updated_at` (moved by bot.store.update_article_with_matches),
and archive pages are cut from the order entries entered a feed, which the matches' `matched_at`
and the article ids already give (bot.store.feed_history). The revision stays, empty, so the
migration chain keeps its reserved shape.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
