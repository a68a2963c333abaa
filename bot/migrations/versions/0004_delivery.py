"""Reserved for the Telegram work (routes, rate limits, retries, mutes);
empty until that work lands.

Revision slots are reserved in advance so that work on different parts of the schema can land in
any order without forking the migration history.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
