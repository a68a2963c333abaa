"""Reserved for the watch-language work (near-duplicate stories, match evidence);
empty until that work lands.

Revision slots are reserved in advance so that work on different parts of the schema can land in
any order without forking the migration history.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
