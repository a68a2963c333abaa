"""Reserved for the ingestion work (source scheduling, back-off, health, entry updates);
empty until that work lands.

Revision slots are reserved in advance so that work on different parts of the schema can land in
any order without forking the migration history.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
