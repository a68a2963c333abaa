"""Reserved for the article-cleaning work (per-site learned boilerplate);
empty until that work lands.

Revision slots are reserved in advance so that work on different parts of the schema can land in
any order without forking the migration history.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
